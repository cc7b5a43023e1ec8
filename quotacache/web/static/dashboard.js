// quotacache dashboard: draws the snapshot embedded in the page at once (first paint),
// then listens to /dashboard/events and redraws on every snapshot.
// No library: a line chart and a bar chart in a few dozen lines each.
// Budget, fresh share and calls per minute are worked out by the server (dashboard.py),
// so every viewer sees the same figures; this file only draws them.
"use strict";

const HISTORY = 180;                 // points kept per time series (3 min at 1 s)
const COLORS = ["#2a7ae2", "#e2622a", "#19a35b", "#9b4de0", "#d64545", "#7a8699"];
const FONT = "11px system-ui, sans-serif";
const RETRY_MS = 5000;               // before asking again for a refused event stream
const history = [];                  // snapshots, oldest first
let updates = 0;

function $(id) { return document.getElementById(id); }
function esc(text) {
  return String(text).replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;",
                                                   '"': "&quot;", "'": "&#39;"})[c]);
}
function percent(share) { return share === null || share === undefined ? "-" : (share * 100).toFixed(1) + " %"; }
function span(seconds, fallback) {
  return seconds === null || seconds === undefined ? "since start" : `last ${fallback && seconds >= fallback - 1.5 ? fallback : Math.round(seconds)} s`;
}

function fitCanvas(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (canvas.width !== Math.round(w * ratio) || canvas.height !== Math.round(h * ratio)) {
    canvas.width = Math.round(w * ratio); canvas.height = Math.round(h * ratio);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, w, h);
  ctx.font = FONT; ctx.textBaseline = "alphabetic"; ctx.textAlign = "left";
  return [ctx, w, h];
}

function textWidth(ctx, texts) { return Math.max(0, ...texts.map(t => ctx.measureText(t).width)); }

// ``text`` cut to ``width`` pixels, with an ellipsis when it had to be cut.
function fitText(ctx, text, width) {
  if (ctx.measureText(text).width <= width) return text;
  let cut = text;
  while (cut.length > 1 && ctx.measureText(cut + "…").width > width) cut = cut.slice(0, -1);
  return cut + "…";
}

// The smallest of 1, 2, 4, 6, 8 or 10 times a power of ten at or above ``value``: a top
// of the y axis whose quarters are round numbers.
function niceMax(value) {
  const unit = Math.pow(10, Math.floor(Math.log10(value)));
  return [1, 2, 4, 6, 8, 10].map(m => m * unit).find(top => top >= value * (1 - 1e-9));
}

function emptyNote(ctx, w, h, text) {
  ctx.fillStyle = "#9aa2b1"; ctx.textAlign = "center";
  ctx.fillText(text, w / 2, h / 2); ctx.textAlign = "left";
}

// series: [{name, values: [number|null]}] over the same x range; each series' latest value
// is written beside its last point, in a right margin wide enough for the widest of them.
function lineChart(canvas, series, {max: fixedMax, format = v => String(Math.round(v)), empty} = {}) {
  const [ctx, w, h] = fitCanvas(canvas);
  const pad = 10;
  const all = series.flatMap(s => s.values.filter(v => v !== null && v !== undefined));
  const max = fixedMax || niceMax(Math.max(1, ...all) * 1.1);
  const ticks = [0, 1, 2, 3, 4].map(i => String(Math.round(max * (4 - i) / 4 * 100) / 100));
  const left = pad + textWidth(ctx, ticks) + 6;
  const lasts = series.map(s => {
    const j = s.values.length - 1;
    return j >= 0 && s.values[j] !== null && s.values[j] !== undefined ? format(s.values[j]) : null;
  });
  const right = pad + textWidth(ctx, lasts.filter(t => t !== null)) + 8;
  const x = j => left + (w - left - right) * j / Math.max(1, HISTORY - 1);
  const y = v => h - pad - (h - 2 * pad) * Math.min(v, max) / max;
  ctx.strokeStyle = "#e3e6ec"; ctx.fillStyle = "#6b7484"; ctx.lineWidth = 1;
  ticks.forEach((label, i) => {
    const ty = pad + (h - 2 * pad) * i / 4;
    ctx.beginPath(); ctx.moveTo(left, ty); ctx.lineTo(w - right, ty); ctx.stroke();
    ctx.textAlign = "right"; ctx.fillText(label, left - 6, ty + 4); ctx.textAlign = "left";
  });
  const labels = [];
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const value = j => (s.values[j] === null || s.values[j] === undefined ? null : s.values[j]);
    ctx.strokeStyle = color; ctx.fillStyle = color; ctx.lineWidth = 2; ctx.beginPath();
    s.values.forEach((v, j) => {
      if (value(j) === null) return;
      if (j > 0 && value(j - 1) !== null) ctx.lineTo(x(j), y(v)); else ctx.moveTo(x(j), y(v));
    });
    ctx.stroke();
    s.values.forEach((v, j) => {  // a point without neighbours (the first one) as a dot
      const last = j === s.values.length - 1;
      if (value(j) === null || (!last && (j > 0 && value(j - 1) !== null || value(j + 1) !== null))) return;
      ctx.beginPath(); ctx.arc(x(j), y(v), last ? 3.5 : 2.5, 0, 2 * Math.PI); ctx.fill();
    });
    if (lasts[i] !== null) {
      const j = s.values.length - 1;
      labels.push({x: x(j) + 7, y: y(s.values[j]) + 4, text: lasts[i], color});
    }
  });
  // Equal labels at the same height are written once (in grey when their series differ);
  // labels of close values are pushed apart, and kept inside the canvas.
  labels.sort((a, b) => a.y - b.y);
  for (let k = labels.length - 1; k > 0; k--) {
    if (labels[k].text === labels[k - 1].text && Math.abs(labels[k].y - labels[k - 1].y) < 1) {
      labels[k - 1].color = "#6b7484"; labels.splice(k, 1);
    }
  }
  labels.forEach((l, k) => { if (k > 0) l.y = Math.max(l.y, labels[k - 1].y + 12); });
  const overflow = labels.length ? labels[labels.length - 1].y - (h - 2) : 0;
  labels.forEach(l => {
    if (overflow > 0) l.y -= overflow;
    ctx.fillStyle = l.color;
    ctx.fillText(l.text, Math.min(l.x, w - 2 - ctx.measureText(l.text).width), Math.max(11, l.y));
  });
  if (!all.length && empty) emptyNote(ctx, w, h, empty);
  canvas.dataset.points = String(Math.max(0, ...series.map(s => s.values.length)));
  canvas.dataset.last = JSON.stringify(series.map(s => s.values[s.values.length - 1] ?? null));
}

// rows: [{label, parts: [number], title}] drawn as stacked horizontal bars; the label
// column and the right margin (for the titles) are as wide as their widest text.
function barChart(canvas, rows, partColors, empty) {
  canvas.style.height = Math.max(60, rows.length * 18 + 10) + "px";
  const [ctx, w, h] = fitCanvas(canvas);
  const labelWidth = Math.min(w * 0.45, textWidth(ctx, rows.map(r => r.label)) + 10);
  const titleWidth = textWidth(ctx, rows.map(r => r.title)) + 10;
  const room = Math.max(10, w - labelWidth - titleWidth);
  const max = Math.max(1, ...rows.map(r => r.parts.reduce((a, b) => a + b, 0)));
  rows.forEach((r, i) => {
    const y = 5 + i * 18;
    ctx.fillStyle = "#1d2330"; ctx.fillText(fitText(ctx, r.label, labelWidth - 10), 2, y + 11);
    let x = labelWidth;
    r.parts.forEach((p, k) => {
      const width = room * p / max;
      ctx.fillStyle = partColors[k]; ctx.fillRect(x, y + 2, width, 12); x += width;
    });
    ctx.fillStyle = "#6b7484"; ctx.fillText(r.title, x + 6, y + 11);
  });
  if (!rows.length && empty) emptyNote(ctx, w, h, empty);
  canvas.dataset.rows = String(rows.length);
}

function legend(el, names) {
  el.innerHTML = names.map((n, i) =>
    `<span><i style="background:${COLORS[i % COLORS.length]}"></i>${esc(n)}</span>`).join("");
}

function meter(used, allowance) {
  const share = allowance ? used / allowance : 0;
  const cls = share >= 1 ? "full" : share >= 0.8 ? "warn" : "";
  return `<span class="meter ${cls}"><span style="width:${Math.min(100, share * 100)}%"></span></span>`;
}

function bar(share, cls) {
  const width = share === null || share === undefined ? 0 : Math.min(100, Math.max(0, share * 100));
  return `<div class="bar ${cls}"><span style="width:${width}%"></span></div>`;
}

// Per service: the binding limit's calls / allowance, and the fresh share of its reads.
function renderBudgets(snapshot) {
  const fresh = snapshot.fresh || {services: {}};
  $("budgets").innerHTML = Object.entries(snapshot.services).map(([name, status]) => {
    const b = (snapshot.budget || {})[name];
    const f = fresh.services[name];
    let budget;
    if (status.error) budget = `<div class="error">${esc(status.error)}</div>`;
    else if (!b) budget = `<div class="error">no limit configured</div>`;
    else {
      const cls = b.share >= 1 ? "full" : b.share >= 0.8 ? "warn" : "";
      const endpoint = b.endpoint ? ` · busiest endpoint ${esc(b.endpoint.scope)}: ${b.endpoint.used} / ${b.endpoint.allowance} in ${b.endpoint.limit.split("/")[1]} s` : "";
      budget = bar(b.share, cls) + `<div class="figure"><b class="used">${b.used} / ${b.allowance}</b> calls
        in the last ${b.seconds} s (${Math.round(b.share * 100)} %, limit ${esc(b.limit)})<span class="muted">${endpoint}</span></div>`;
    }
    const share = f && f.share !== null ? f.share : null;
    const freshText = !f ? "-" : f.reads === 0 ? `<span class="muted">no reads, ${span(fresh.seconds)}</span>`
      : `<b>${percent(share)}</b> fresh: ${f.hits} of ${f.reads} reads, ${span(fresh.seconds)}`;
    return `<div class="budget-row" data-service="${esc(name)}"><span class="name">${esc(name)}</span>
      <div class="budget" data-share="${b ? b.share : ""}">${budget}</div>
      <div class="fresh" data-share="${share ?? ""}">${bar(share, "fresh" + (share === null ? " none" : ""))}
        <div class="figure">${freshText}</div></div></div>`;
  }).join("");
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
  const fresh = last.fresh || {overall: {}}, calls = last.calls || {services: {}};
  $("updates").textContent = String(updates);
  const workers = Object.values(stats.workers || {});
  $("workers").textContent = `${workers.filter(w => w === "ok").length} / ${workers.length}`;
  $("fresh-share").textContent = percent(fresh.overall.share);
  $("fresh-span").textContent = `fresh share of reads, ${span(fresh.seconds)}`;
  $("hit-rate").textContent = percent(stats.hit_rate);
  $("hit-rate-part").hidden = fresh.seconds === null;  // the same figure then
  $("reads").textContent = String(stats.reads);
  $("calls-per-minute").textContent = String(calls.overall ?? "-");
  $("calls-span").textContent = `upstream calls, ${span(calls.seconds, 60)}`;
  $("calls-saved").textContent = String(stats.calls_saved);
  $("upstream-calls").textContent = String(stats.upstream_calls);
  $("stale-served").textContent = String(stats.stale_served);
  $("rate-limit-blocks").textContent = String(stats.rate_limit_blocks);
  $("dead-letters").textContent = String(stats.dead_letters);

  renderBudgets(last);
  lineChart($("chart-hit-rate"), [{name: "fresh share", values: history.map(h =>
    h.fresh && h.fresh.overall.share !== null ? 100 * h.fresh.overall.share : null)}],
  {max: 100, format: v => Math.round(v) + " %", empty: "no reads yet"});
  // A count since the counters started (no earlier snapshot) is not one of a minute: not drawn.
  lineChart($("chart-calls"), names.map(n => ({name: n, values: history.map(h =>
    h.calls && h.calls.seconds !== null ? h.calls.services[n] ?? null : null)})),
  {empty: "counting from now on"});
  legend($("legend-calls"), names);
  lineChart($("chart-queue"), names.map(n => ({name: n, values: history.map(h =>
    queued(h.services[n]))})));
  legend($("legend-queue"), names);
  barChart($("chart-staleness"), Object.entries(stats.freshness || {}).map(([name, f]) => ({
    label: name, parts: [f.fresh, f.stale],
    title: `${f.fresh} / ${f.stale}, oldest ${Math.round(f.oldest_age)} s`})), ["#19a35b", "#e2a72a"],
  "no entries yet");
  renderServices(last.services);
}

// Adds a snapshot to the history; false for one already there (the stream's first
// snapshot can be the one embedded in the page).
function accept(snapshot) {
  const last = history[history.length - 1];
  if (last && snapshot.time <= last.time) return false;
  history.push(snapshot);
  if (history.length > HISTORY) history.shift();
  return true;
}

function showStatus(text, cls) { $("status").textContent = text; $("status").className = cls; }
function clock(time) { return new Date(time * 1000).toLocaleTimeString(); }

function connect() {
  const events = new EventSource("/dashboard/events");
  events.addEventListener("snapshot", (e) => {
    const snapshot = JSON.parse(e.data);
    updates += 1;
    accept(snapshot);
    showStatus("live · " + clock(snapshot.time), "muted");
    render();
  });
  events.onerror = () => {
    showStatus("disconnected, retrying…", "down");
    // The browser retries a dropped stream itself, but not a refused one (a 503 when
    // this worker has its most dashboards open): then ask again a little later.
    if (events.readyState === EventSource.CLOSED) setTimeout(connect, RETRY_MS);
  };
}

// First paint: the snapshot the server embedded in the page, before the stream connects.
function start() {
  let embedded = null;
  try { embedded = JSON.parse($("snapshot").textContent); } catch (e) { embedded = null; }
  if (embedded && embedded.stats) {
    accept(embedded);
    showStatus("snapshot · " + clock(embedded.time), "muted");
    render();
  }
  connect();
}

start();
