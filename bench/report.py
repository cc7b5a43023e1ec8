"""Renders bench/results/compare.json as Markdown tables and a PNG chart, and checks targets.

Each system is scored against the trace's optimum (fresh / optimum, answered / optimum),
and a missed target is printed loudly, so a regression cannot hide in a table.

    python -m bench.report
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
COLUMNS = [("system", "system", "{}"), ("upstream_calls", "upstream calls", "{}"),
           ("rejected_429", "429s", "{}"), ("calls_per_oracle", "calls / oracle", "{:.2f}"),
           ("fresh", "fresh", "{:.1%}"), ("answered", "answered", "{:.1%}"),
           ("fresh_per_optimum", "fresh / optimum", "{:.2f}"),
           ("answered_per_optimum", "answered / optimum", "{:.2f}"),
           ("critical_per_optimum", "critical fresh / optimum", "{:.2f}"),
           ("p50_ms", "p50 ms", "{:.2f}"), ("p99_ms", "p99 ms", "{:.1f}"),
           ("reads_per_s", "reads/s", "{:.1f}"), ("cpu_s", "CPU s", "{:.2f}"),
           ("cpu_broker_s", "of which broker", "{:.2f}"),
           ("peak_rss_mb", "peak RSS MB", "{:.0f}")]


#: Each quotacache row must reach these fractions of the optimum (critical: on ``tight``).
TARGETS = {"fresh": 0.95, "answered": 0.97, "critical": 0.98}
#: Row count -> optimum objective it is divided by.
RATIOS = {"fresh_per_optimum": ("fresh_reads", "fresh"),
          "answered_per_optimum": ("answered_reads", "answered"),
          "critical_per_optimum": ("critical_fresh_reads", "critical")}


def cell(value: object, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def trace_line(trace: dict) -> str:
    limits = ", ".join(trace.get("limits", ["100/60", "20/10", "10/5"]))
    endpoint = ", ".join(trace.get("endpoint_limits", ["10/60"]))
    return (f"Trace {trace.get('name', 'zipf')}: {trace['reads']} reads of "
            f"{trace['keys_read']} keys in {trace['duration_s']:.0f} s (oracle minimum "
            f"{trace['oracle_calls']} calls); limits {limits} service-wide, {endpoint} per "
            f"endpoint.")


def optimum_table(optima: dict, trace: dict) -> str:
    """One row per objective: what the best schedule reaches, and the proven bound."""
    reads, critical = trace["reads"], trace.get("critical_reads") or 1
    lines = ["| optimum of | fresh | answered | critical fresh | calls | value / bound | gap "
             "| solve s | status |", "|---|---|---|---|---|---|---|---|---|"]
    for name, best in optima.items():
        lines.append(f"| {name} | {best['fresh'] / reads:.1%} | {best['answered'] / reads:.1%} "
                     f"| {best['critical_fresh'] / critical:.1%} | {best['calls']} | "
                     f"{best['value']} / {best['bound']} | {best['gap']:.2%} | "
                     f"{best['seconds']:.1f} | {best['status']} |")
    return "\n".join(lines) + "\n"


def scored(results: dict) -> list[dict]:
    """The system rows with their fractions of the optimum (None without an optimum)."""
    optima = results.get("optimum") or {}
    rows = []
    for row in results["systems"]:
        row = dict(row)
        for ratio, (count, objective) in RATIOS.items():
            best = optima.get(objective, {}).get("value")
            row[ratio] = (round(row[count] / best, 3)
                          if best and row.get(count) is not None else None)
        rows.append(row)
    return rows


def misses(results: dict) -> list[str]:
    """Every target a quotacache row misses, in words."""
    rows = scored(results)
    nginx = next((row["fresh"] for row in rows if row["system"] == "nginx"), None)
    found = []
    for row in rows:
        if not row["system"].startswith("quotacache"):
            continue
        name = row["system"]
        checks = [("fresh_per_optimum", TARGETS["fresh"], "fresh"),
                  ("answered_per_optimum", TARGETS["answered"], "answered")]
        if results["trace"].get("name") == "tight":
            checks.append(("critical_per_optimum", TARGETS["critical"], "critical fresh"))
        for ratio, target, what in checks:
            if row[ratio] is not None and row[ratio] < target:
                found.append(f"{name}: {what} is {row[ratio]:.3f} of the optimum "
                             f"(target {target})")
        if row["rejected_429"]:
            found.append(f"{name}: {row['rejected_429']} calls rejected with 429 (target 0)")
        if nginx is not None and row["fresh"] <= nginx:
            found.append(f"{name}: fresh {row['fresh']:.1%} is not above nginx's {nginx:.1%}")
    return found


def markdown(results: dict) -> str:
    trace = results["trace"]
    lines = [trace_line(trace) + f" Upstream: the simulator; {results['machine']}.", "",
             "| " + " | ".join(title for _, title, _ in COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    for row in scored(results):
        lines.append("| " + " | ".join(cell(row.get(key), fmt) for key, _, fmt in COLUMNS)
                     + " |")
    if results.get("optimum"):
        lines += ["", optimum_table(results["optimum"], trace).rstrip()]
        gaps = [name for name, best in results["optimum"].items() if best["gap"] > 0]
        if gaps:
            lines += ["", f"Not proven optimal: {', '.join(gaps)}; fractions are of the best "
                          "schedule found, and would be lower by up to the gap."]
    missed = misses(results)
    lines += ["", "Targets (quotacache rows): fresh >= 0.95 x optimum, answered >= 0.97 x "
              "optimum, no 429s, fresh above nginx; on tight, critical fresh >= 0.98 x optimum."]
    lines += [f"- **MISSED** {miss}" for miss in missed] or ["- all met"]
    micro = results.get("micro")
    if micro:
        lines += ["", "| micro-benchmark (pytest-benchmark) | median | min |", "|---|---|---|"]
        lines += [f"| {name} | {m['mean_us']:.2f} µs | {m['min_us']:.2f} µs |"
                  for name, m in micro.items()]
    return "\n".join(lines) + "\n"


def chart(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = scored(results)
    names = [row["system"] for row in rows]
    panels = [("upstream_calls", "upstream calls"), ("rejected_429", "429s received"),
              ("fresh", "reads answered fresh"), ("answered", "reads answered"),
              ("fresh_per_optimum", "fresh / optimum"),
              ("answered_per_optimum", "answered / optimum"),
              ("p99_ms", "read latency p99 (ms)"), ("cpu_s", "CPU seconds")]
    figure, axes = plt.subplots(2, 4, figsize=(17, 6.5))
    for axis, (key, title) in zip(axes.flat, panels, strict=True):
        values = [row.get(key) or 0 for row in rows]
        bars = axis.bar(names, values, color=["#7a8699", "#e2622a", "#2a7ae2", "#19a35b"])
        if key == "upstream_calls":
            axis.axhline(results["trace"]["oracle_calls"], color="black", linestyle="--",
                         label="oracle minimum")
            axis.legend(fontsize=8)
        if key.endswith("_per_optimum"):
            target = TARGETS[key.split("_")[0]]
            axis.axhline(target, color="black", linestyle="--", label=f"target {target}")
            axis.legend(fontsize=8)
        axis.set_title(title, fontsize=10)
        axis.tick_params(axis="x", labelsize=8, rotation=15)
        for bar, value in zip(bars, values, strict=True):
            label = (f"{value:.0%}" if key in ("fresh", "answered")
                     else f"{value:.2f}" if key.endswith("_per_optimum") else f"{value:g}")
            axis.annotate(label, (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                          ha="center", va="bottom", fontsize=8)
    figure.suptitle(f"Trace {results['trace'].get('name', 'zipf')}, same upstream limits: "
                    "direct calls, nginx, quotacache, and the optimum")
    figure.tight_layout()
    figure.savefig(path, dpi=90)


def main() -> None:
    results = json.loads((RESULTS / "compare.json").read_text())
    (RESULTS / "compare.md").write_text(markdown(results))
    chart(results, RESULTS / "compare.png")
    print(markdown(results))
    for miss in misses(results):
        print(f"!!! TARGET MISSED: {miss}", file=sys.stderr)


if __name__ == "__main__":
    main()
