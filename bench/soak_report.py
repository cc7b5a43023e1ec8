"""The soak's figures as a table (``.md``) and a chart (``.png``): RSS of worker and
broker, records per minute and hit rate over time, generations marked."""

from __future__ import annotations

from pathlib import Path


def series(samples: list[dict]) -> dict[str, list]:
    out: dict[str, list] = {"t": [], "worker": [], "broker": [], "records_per_min": [],
                            "hit_rate": [], "generation": []}
    prev = None
    for s in samples:
        out["t"].append(s["t"] / 60)
        out["worker"].append(s["worker_rss_mb"])
        out["broker"].append(s["broker_rss_mb"])
        out["generation"].append(s.get("generation"))
        rpm = hit = None
        if prev is not None and s["t"] > prev["t"]:
            minutes = (s["t"] - prev["t"]) / 60
            produced = _produced(prev, s)
            rpm = produced / minutes if produced is not None else None
            reads = {k: s["reads"].get(k, 0) - prev["reads"].get(k, 0) for k in s["reads"]}
            total = sum(reads.values())
            hit = reads.get("HIT", 0) / total if total else None
        out["records_per_min"].append(rpm)
        out["hit_rate"].append(hit)
        prev = s
    return out


def _produced(prev: dict, cur: dict) -> float | None:
    """Records produced between two samples; a topic that shrank was rotated away (its
    successor's records count from zero)."""
    if not prev.get("topics") or not cur.get("topics"):
        return None
    total = 0
    for topic, n in cur["topics"].items():
        before = prev["topics"].get(topic, 0)
        total += n - before if n >= before else n
    return total


def write(result: dict, stem: Path) -> None:
    s = series(result["samples"])
    unit = result.get("per_unit", {})
    lines = [f"# Soak: {result['seconds'] / 60:.1f} min of the demo's load "
             f"({result['rate']:g} reads + requests/s)", "",
             f"{result['machine']}, load average {result['load_average']:.1f} at the end; "
             f"worker env {result['env'] or '{}'}", "",
             "| minute | worker RSS MB | broker RSS MB | records/min | hit rate | generation |",
             "|---|---|---|---|---|---|"]
    for i, t in enumerate(s["t"]):
        rpm, hit = s["records_per_min"][i], s["hit_rate"][i]
        lines.append(f"| {t:.1f} | {s['worker'][i]} | {s['broker'][i]} | "
                     f"{'-' if rpm is None else round(rpm)} | "
                     f"{'-' if hit is None else f'{hit:.1%}'} | {s['generation'][i]} |")
    if unit:
        lines += ["", f"Records per upstream call: {unit.get('records_per_call')}; per read: "
                  f"{unit.get('records_per_read')}; per minute: {unit.get('records_per_minute')} "
                  f"(over {unit.get('minutes')} min, {unit.get('upstream_calls')} calls, "
                  f"{unit.get('reads')} reads)", "", "| topic | records/min |", "|---|---|"]
        lines += [f"| {t} | {n} |" for t, n in unit.get("per_topic_per_minute", {}).items()]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing (pip install -e '.[bench]'): no chart")
        return
    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    axes[0].plot(s["t"], s["worker"], label="worker")
    axes[0].plot(s["t"], s["broker"], label="broker (Tansu)")
    axes[0].set_ylabel("RSS, MB")
    axes[0].legend(loc="upper left")
    axes[1].plot(s["t"], [v if v is not None else float("nan") for v in s["records_per_min"]])
    axes[1].set_ylabel("records / min")
    axes[2].plot(s["t"], [v if v is not None else float("nan") for v in s["hit_rate"]])
    axes[2].set_ylabel("hit rate")
    axes[2].set_xlabel("minutes")
    gens = s["generation"]
    for i in range(1, len(gens)):
        if gens[i] is not None and gens[i - 1] is not None and gens[i] != gens[i - 1]:
            for ax in axes:
                ax.axvline(s["t"][i], color="grey", linestyle=":", linewidth=1)
    fig.tight_layout()
    fig.savefig(stem.with_suffix(".png"), dpi=90)
