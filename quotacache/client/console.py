"""Rich renderings of the figures for the terminal: ``quotacache stats`` and ``watch``."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Group
from rich.table import Table

#: Counter -> column heading (short, so the table fits an 80-column terminal).
COUNTERS = {"hits": "hit", "stale_served": "stale", "misses": "miss", "upstream_calls": "calls",
            "calls_saved": "saved", "rate_limit_blocks": "held"}
#: What the short headings mean: the table's caption.
LEGEND = ("stale: reads answered stale · held: calls held back by a limit · cached: entries "
          "fresh/stale · oldest: age of the oldest entry · k, M: thousands, millions "
          "(exact figures: --json)")


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def count(value: float | int | None) -> str:
    """A counter in at most 4 characters: 9999, 12k, 123k, 1.2M, 12M, ... (exact: --json)."""
    number = int(value or 0)
    if abs(number) < 10_000:
        return str(number)
    for unit, size in (("k", 1e3), ("M", 1e6), ("G", 1e9), ("T", 1e12)):
        scaled = number / size
        if abs(round(scaled, 1)) < 10 and unit != "k":
            return f"{scaled:.1f}{unit}"
        if abs(round(scaled)) < 1000:
            return f"{scaled:.0f}{unit}"
    return f"{number / 1e15:.0f}P"


def age(seconds: float) -> str:
    """An age in at most 4 characters: 42s, 17m, 5.5h, 12h, 3d."""
    for unit, size in (("s", 1), ("m", 60), ("h", 3600), ("d", 86400)):
        scaled = seconds / size
        if unit in ("h", "d") and round(scaled, 1) < 10:
            return f"{scaled:.1f}{unit}"
        if round(scaled) < (60 if unit in ("s", "m") else 24 if unit == "h" else 1000):
            return f"{scaled:.0f}{unit}"
    return f"{seconds / 86400:.0f}d"


def stats_table(stats: dict[str, Any]) -> Table:
    """Totals and one row per endpoint, with the freshness of its cached entries.

    Fits an 80-column terminal: short headings, no vertical rules, counters of at most 4
    characters (``count``); a long endpoint name folds onto a second line rather than
    cutting any figure.
    """
    workers = stats.get("workers", {})
    ok = sum(1 for state in workers.values() if state == "ok")
    title = (f"hit rate {_rate(stats.get('hit_rate'))} of {stats.get('reads', 0)} reads · "
             f"{stats.get('upstream_calls', 0)} upstream calls · "
             f"{stats.get('calls_saved', 0)} saved · {stats.get('errors', 0)} errors · "
             f"{stats.get('dead_letters', 0)} dead letters · workers {ok}/{len(workers) or 1}")
    table = Table(title=title, title_justify="left", caption_justify="left",
                  box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  collapse_padding=True)
    table.add_column("endpoint", overflow="fold", min_width=12)
    for heading in COUNTERS.values():
        table.add_column(heading, justify="right", no_wrap=True)
    table.add_column("cached", justify="right", no_wrap=True)
    table.add_column("oldest", justify="right", no_wrap=True)
    freshness = stats.get("freshness", {})
    service = None
    for name, counts in stats.get("endpoints", {}).items():
        if name.split("/")[0] != service:
            service = name.split("/")[0]
            table.add_row(f"[bold]{service}[/bold]")
        fresh = freshness.get(name, {})
        table.add_row("  " + name.split("/", 1)[-1], *(count(counts.get(c)) for c in COUNTERS),
                      f"{count(fresh.get('fresh'))}/{count(fresh.get('stale'))}",
                      age(fresh.get("oldest_age") or 0) if fresh else "-")
    table.add_row("total", *(count(stats.get(c)) for c in COUNTERS), "", "",
                  style="bold")
    missing = [f"{url}: {state} (its figures are missing)"
               for url, state in workers.items() if state != "ok"]
    table.caption = " · ".join([LEGEND, *missing])
    return table


def services_table(services: dict[str, Any]) -> Table:
    """Each service's strategy, breaker, budget use, queue and limits; fits 80 columns
    (the limits, and a worker's error in their place, wrap; ``*`` marks a pinned
    strategy)."""
    table = Table(title="services", title_justify="left", box=box.SIMPLE_HEAD,
                  show_edge=False, pad_edge=False, collapse_padding=True,
                  caption="*: pinned · queue: waiting fetches, critical/high/medium/low · "
                          "limits: calls used/allowed in the window",
                  caption_justify="left")
    table.add_column("service", no_wrap=True)
    table.add_column("strategy", no_wrap=True)
    table.add_column("breaker", no_wrap=True)
    table.add_column("budget", justify="right", no_wrap=True)
    table.add_column("queue", no_wrap=True)
    table.add_column("limits", overflow="fold")
    for name, status in services.items():
        if "error" in status:
            table.add_row(name, "-", "-", "-", "-", f"[red]{status['error']}[/red]")
            continue
        limits = "\n".join(f"{_scope(row['scope'])}{row['limit']}: "
                           f"{row['used']}/{row['allowance']}" for row in status["limits"])
        queue = status.get("queue", {})
        table.add_row(name, status["strategy"] + ("*" if status["strategy_pinned"] else ""),
                      status["breaker"], f"{status['budget_use']:.0%}",
                      "/".join(count(queue.get(p, 0)) for p in
                               ("critical", "high", "medium", "low")), limits)
    return table


def _scope(scope: str) -> str:
    """A limit's label: the endpoint of an endpoint's own limit, nothing for the service's."""
    return scope.split("/", 1)[1] + " " if "/" in scope else ""


def watch_view(snapshot: dict[str, Any], url: str) -> Group:
    """What ``quotacache watch`` shows: the dashboard's figures as two tables."""
    return Group(f"[bold]quotacache[/bold] {url}  (Ctrl-C to stop)",
                 stats_table(snapshot["stats"]), services_table(snapshot["services"]))
