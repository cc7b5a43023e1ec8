"""Renders bench/results/compare.json as a Markdown table and a PNG chart.

    python -m bench.report
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
COLUMNS = [("system", "system", "{}"), ("upstream_calls", "upstream calls", "{}"),
           ("rejected_429", "429s", "{}"), ("calls_per_oracle", "calls / oracle", "{:.2f}"),
           ("fresh", "fresh", "{:.1%}"), ("answered", "answered", "{:.1%}"),
           ("p50_ms", "p50 ms", "{:.2f}"), ("p99_ms", "p99 ms", "{:.1f}"),
           ("reads_per_s", "reads/s", "{:.1f}"), ("cpu_s", "CPU s", "{:.2f}"),
           ("cpu_broker_s", "of which broker", "{:.2f}"),
           ("peak_rss_mb", "peak RSS MB", "{:.0f}")]


def cell(value: object, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def markdown(results: dict) -> str:
    trace = results["trace"]
    lines = [f"Trace: {trace['reads']} reads of {trace['keys_read']} keys in "
             f"{trace['duration_s']:.0f} s (oracle minimum {trace['oracle_calls']} calls); "
             f"upstream: simulator with the cryptometer limits; {results['machine']}.", "",
             "| " + " | ".join(title for _, title, _ in COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    for row in results["systems"]:
        lines.append("| " + " | ".join(cell(row.get(key), fmt) for key, _, fmt in COLUMNS)
                     + " |")
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

    rows = results["systems"]
    names = [row["system"] for row in rows]
    panels = [("upstream_calls", "upstream calls"), ("rejected_429", "429s received"),
              ("fresh", "reads answered fresh"), ("answered", "reads answered"),
              ("p99_ms", "read latency p99 (ms)"), ("cpu_s", "CPU seconds")]
    figure, axes = plt.subplots(2, 3, figsize=(13, 6.5))
    for axis, (key, title) in zip(axes.flat, panels, strict=True):
        values = [row.get(key) or 0 for row in rows]
        bars = axis.bar(names, values, color=["#7a8699", "#e2622a", "#2a7ae2", "#19a35b"])
        if key == "upstream_calls":
            axis.axhline(results["trace"]["oracle_calls"], color="black", linestyle="--",
                         label="oracle minimum")
            axis.legend(fontsize=8)
        axis.set_title(title, fontsize=10)
        axis.tick_params(axis="x", labelsize=8, rotation=15)
        for bar, value in zip(bars, values, strict=True):
            label = f"{value:.0%}" if key in ("fresh", "answered") else f"{value:g}"
            axis.annotate(label, (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                          ha="center", va="bottom", fontsize=8)
    figure.suptitle("Same trace, same upstream limits: direct calls, nginx, quotacache")
    figure.tight_layout()
    figure.savefig(path, dpi=90)


def main() -> None:
    results = json.loads((RESULTS / "compare.json").read_text())
    (RESULTS / "compare.md").write_text(markdown(results))
    chart(results, RESULTS / "compare.png")
    print(markdown(results))


if __name__ == "__main__":
    main()
