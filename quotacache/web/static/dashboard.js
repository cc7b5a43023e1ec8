// quotacache dashboard: listens to /dashboard/events and draws the figures on canvases.
// No library: a line chart and a bar chart in a few dozen lines each.
"use strict";

const HISTORY = 180;                 // points kept per time series (3 min at 1 s)
const COLORS = ["#2a7ae2", "#e2622a", "#19a35b", "#9b4de0", "#d64545", "#7a8699"];
const history = [];                  // {t, stats, services}
let updates = 0;

function $(id) { return document.getElementById(id); }
function esc(text) {
  return String(text).replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;",
                                                   '"': "&quot;", "'": "&#39;"})[c]);
}

function fitCanvas(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (canvas.width !== w * ratio || canvas.height !== h * ratio) {
    canvas.width = w * ratio; canvas.height = h * ratio;
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, w, h);
  return [ctx, w, h];
}

function axes(ctx, w, h, max, pad) {
  ctx.strokeStyle = "#e3e6ec"; ctx.fillStyle = "#6b7484"; ctx.font = "11px system-ui";
  for (let i = 0; i <= 4; i++) {
    const y = pad + (h - 2 * pad) * i / 4;
    ctx.beginPath(); ctx.moveTo(pad + 30, y); ctx.lineTo(w - pad, y); ctx.stroke();
    ctx.fillText(String(Math.round(max * (4 - i) / 4 * 10) / 10), 2, y + 4);
  }
}

// series: [{name, values: [number|null]}]; draws them over the same x range.
function lineChart(canvas, series, fixedMax) {
  const [ctx, w, h] = fitCanvas(canvas);
  const pad = 10, left = pad + 30;
  const all = series.flatMap(s => s.values.filter(v => v !== null));
  const max = fixedMax || Math.max(1, ...all) * 1.15;
  axes(ctx, w, h, max, pad);
  series.forEach((s, i) => {
    ctx.strokeStyle = COLORS[i % COLORS.length]; ctx.lineWidth = 2; ctx.beginPath();
    let started = false;
    s.values.forEach((v, j) => {
      if (v === null) { started = false; return; }
      const x = left + (w - left - pad) * j / Math.max(1, HISTORY - 1);
      const y = h - pad - (h - 2 * pad) * Math.min(v, max) / max;
      if (started) ctx.lineTo(x, y); else { ctx.moveTo(x, y); started = true; }
    });
    ctx.stroke();
  });
  canvas.dataset.points = String(Math.max(0, ...series.map(s => s.values.length)));
  canvas.dataset.last = JSON.stringify(series.map(s => s.values[s.values.length - 1]));
}

// rows: [{label, parts: [number], title}] drawn as stacked horizontal bars.
function barChart(canvas, rows, partColors) {
  canvas.style.height = Math.max(60, rows.length * 18 + 10) + "px";
  const [ctx, w] = fitCanvas(canvas);
  const labelWidth = 190;
  const max = Math.max(1, ...rows.map(r => r.parts.reduce((a, b) => a + b, 0)));
  ctx.font = "11px system-ui";
  rows.forEach((r, i) => {
    const y = 5 + i * 18;
    ctx.fillStyle = "#1d2330"; ctx.fillText(r.label, 2, y + 11);
    let x = labelWidth;
    r.parts.forEach((p, k) => {
      const width = (w - labelWidth - 80) * p / max;
      ctx.fillStyle = partColors[k]; ctx.fillRect(x, y + 2, width, 12); x += width;
    });
    ctx.fillStyle = "#6b7484"; ctx.fillText(r.title, x + 6, y + 11);
  });
  canvas.dataset.rows = String(rows.length);
}

function legend(el, names) {
  el.innerHTML = names.map((n, i) =>
    `<span><i style="background:${COLORS[i % COLORS.length]}"></i>${n}</span>`).join("");
}

function serviceCalls(stats, service) {
  let calls = 0;
  for (const [name, counts] of Object.entries(stats.endpoints || {})) {
    if (name.startsWith(service + "/")) calls += counts.upstream_calls;
  }
  return calls;
}

// Calls in the last 60 s of history (fewer seconds just after the page opened), per service.
function callsLastMinute(service, at) {
  const now = history[at];
  let j = at;
  while (j > 0 && now.t - history[j - 1].t <= 60) j--;
  if (j === at) return null;
  // Sums can drop (a worker that did not answer, or restarted): never draw below zero.
  return Math.max(0, service === null ? now.stats.upstream_calls - history[j].stats.upstream_calls
    : serviceCalls(now.stats, service) - serviceCalls(history[j].stats, service));
}

function hitRateBetween(a, b) {
  const reads = b.stats.reads - a.stats.reads, hits = b.stats.hits - a.stats.hits;
  return reads > 0 && hits >= 0 ? Math.min(100, 100 * hits / reads) : null;
}

function meter(used, allowance) {
  const share = allowance ? used / allowance : 0;
  const cls = share >= 1 ? "full" : share >= 0.8 ? "warn" : "";
  return `<span class="meter ${cls}"><span style="width:${Math.min(100, share * 100)}%"></span></span>`;
}

function renderServices(services) {
  const body = $("services").querySelector("tbody");
  body.innerHTML = Object.entries(services).map(([name, s]) => {
    name = esc(name);
    if (s.error) return `<tr data-service="${name}"><td>${name}</td><td colspan="5">${esc(s.error)}</td></tr>`;
    const limits = (s.limits || []).map(l =>
      `<div>${esc(l.scope)} ${esc(l.limit)}: ${meter(l.used, l.allowance)} ${l.used} / ${l.allowance}</div>`).join("");
    const q = s.queue || {};
    return `<tr data-service="${name}"><td>${name}</td>
      <td><span class="badge ${esc(s.strategy)}">${esc(s.strategy)}</span>${s.strategy_pinned ? " (pinned)" : ""}</td>
      <td>${esc(s.breaker)}${s.paused_until ? " · paused" : ""}</td>
      <td>${Math.round(s.budget_use * 100)} %</td><td>${limits}</td>
      <td class="queue">${q.critical || 0} / ${q.high || 0} / ${q.medium || 0} / ${q.low || 0}</td></tr>`;
  }).join("");
}

function queued(s) {
  return s && s.queue ? Object.values(s.queue).reduce((a, b) => a + b, 0) : null;
}

function render() {
  const last = history[history.length - 1];
  const stats = last.stats;
  const names = Object.keys(last.services);
  $("updates").textContent = String(updates);
  const workers = Object.values(stats.workers || {});
  $("workers").textContent = `${workers.filter(w => w === "ok").length} / ${workers.length}`;
  $("hit-rate").textContent = stats.hit_rate === null ? "-" : (stats.hit_rate * 100).toFixed(1) + " %";
  $("reads").textContent = String(stats.reads);
  $("calls-per-minute").textContent = String(callsLastMinute(null, history.length - 1) ?? "-");
  $("calls-saved").textContent = String(stats.calls_saved);
  $("upstream-calls").textContent = String(stats.upstream_calls);
  $("stale-served").textContent = String(stats.stale_served);
  $("rate-limit-blocks").textContent = String(stats.rate_limit_blocks);
  $("dead-letters").textContent = String(stats.dead_letters);

  lineChart($("chart-hit-rate"), [{name: "hit rate", values: history.map((h, i) =>
    i === 0 ? null : hitRateBetween(history[i - 1], h))}], 100);
  lineChart($("chart-calls"), names.map(n => ({name: n, values: history.map((h, i) =>
    callsLastMinute(n, i))})));
  legend($("legend-calls"), names);
  lineChart($("chart-queue"), names.map(n => ({name: n, values: history.map(h =>
    queued(h.services[n]))})));
  legend($("legend-queue"), names);
  barChart($("chart-staleness"), Object.entries(stats.freshness || {}).map(([name, f]) => ({
    label: name, parts: [f.fresh, f.stale],
    title: `${f.fresh} / ${f.stale}, oldest ${Math.round(f.oldest_age)} s`})), ["#19a35b", "#e2a72a"]);
  renderServices(last.services);
}

function connect() {
  const events = new EventSource("/dashboard/events");
  events.addEventListener("snapshot", (e) => {
    const snapshot = JSON.parse(e.data);
    history.push({t: snapshot.time, stats: snapshot.stats, services: snapshot.services});
    if (history.length > HISTORY) history.shift();
    updates += 1;
    $("status").textContent = "live · " + new Date(snapshot.time * 1000).toLocaleTimeString();
    $("status").className = "muted";
    render();
  });
  events.onerror = () => { $("status").textContent = "disconnected, retrying…"; $("status").className = "down"; };
}

connect();
