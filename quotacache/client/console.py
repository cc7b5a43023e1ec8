"""Rich renderings of the figures for the terminal: ``quotacache stats`` and ``watch``."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table

#: Counter -> column heading (short, so the table fits an 80-column terminal).
COUNTERS = {"hits": "hit", "stale_served": "stale", "misses": "miss", "upstream_calls": "calls",
            "calls_saved": "saved", "rate_limit_blocks": "held"}


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def stats_table(stats: dict[str, Any]) -> Table:
    """Totals and one row per endpoint, with the freshness of its cached entries."""
    workers = stats.get("workers", {})
    ok = sum(1 for state in workers.values() if state == "ok")
    title = (f"hit rate {_rate(stats.get('hit_rate'))} of {stats.get('reads', 0)} reads · "
             f"{stats.get('upstream_calls', 0)} upstream calls · "
             f"{stats.get('calls_saved', 0)} saved · {stats.get('errors', 0)} errors · "
             f"{stats.get('dead_letters', 0)} dead letters · workers {ok}/{len(workers) or 1}")
    table = Table(title=title, title_justify="left")
    table.add_column("endpoint", no_wrap=True)
    for heading in COUNTERS.values():
        table.add_column(heading, justify="right")
    table.add_column("fresh/stale", justify="right")
    table.add_column("oldest", justify="right")
    freshness = stats.get("freshness", {})
    service = None
    for name, counts in stats.get("endpoints", {}).items():
        if name.split("/")[0] != service:
            service = name.split("/")[0]
            table.add_row(f"[bold]{service}[/bold]")
        fresh = freshness.get(name, {})
        table.add_row("  " + name.split("/", 1)[-1], *(str(counts.get(c, 0)) for c in COUNTERS),
                      f"{fresh.get('fresh', 0)}/{fresh.get('stale', 0)}",
                      f"{fresh.get('oldest_age', 0):.0f}s" if fresh else "-")
    table.add_row("total", *(str(stats.get(c, 0)) for c in COUNTERS), "", "",
                  style="bold")
    missing = [f"{url}: {state} (its figures are missing)"
               for url, state in workers.items() if state != "ok"]
    table.caption = " · ".join(["held: calls held back by a limit", *missing])
    return table


def services_table(services: dict[str, Any]) -> Table:
    table = Table(title="services", title_justify="left")
    for column in ("service", "strategy", "breaker", "budget", "limits used/allowed",
                   "queue c/h/m/l"):
        table.add_column(column, no_wrap=column in ("service", "strategy", "limits used/allowed"))
    for name, status in services.items():
        if "error" in status:
            table.add_row(name, status["error"], "", "", "", "")
            continue
        limits = "\n".join(f"{row['scope'].split('/')[-1]} {row['limit']}: "
                           f"{row['used']}/{row['allowance']}" for row in status["limits"])
        queue = status.get("queue", {})
        table.add_row(name, status["strategy"] + (" (pinned)" if status["strategy_pinned"]
                                                  else ""),
                      status["breaker"], f"{status['budget_use']:.0%}", limits,
                      "/".join(str(queue.get(p, 0)) for p in
                               ("critical", "high", "medium", "low")))
    return table


def watch_view(snapshot: dict[str, Any], url: str) -> Group:
    """What ``quotacache watch`` shows: the dashboard's figures as two tables."""
    return Group(f"[bold]quotacache[/bold] {url}  (Ctrl-C to stop)",
                 stats_table(snapshot["stats"]), services_table(snapshot["services"]))
