"""Counters of what the cache did, per endpoint (``service/endpoint``), kept by each worker.

Counters are keyed only by configured names (endpoints, subscribed topics), never by a
symbol or anything else a request names, so the map stays as small as the configuration.
Worker-wide events (volatility signals) have counters of their own.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

FIELDS = ("hits", "misses", "stale_served", "upstream_calls", "calls_saved",
          "rate_limit_blocks", "rate_limited", "retries", "dropped_unread", "late_calls",
          "errors", "dead_letters")


class Stats:
    def __init__(self) -> None:
        self.by_endpoint: dict[str, Counter[str]] = defaultdict(Counter)
        self.events: Counter[str] = Counter()

    def count(self, field: str, endpoint: str, n: int = 1) -> None:
        self.by_endpoint[endpoint][field] += n

    def count_event(self, name: str) -> None:
        self.events[name] += 1

    def totals(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for counts in self.by_endpoint.values():
            total.update(counts)
        return total

    def snapshot(self) -> dict[str, Any]:
        """The figures of /stats: totals, hit rate, and every endpoint's counts."""
        total = self.totals()
        return {
            **{f: total[f] for f in FIELDS},
            **rates(total),
            "endpoints": {name: {f: c[f] for f in FIELDS}
                          for name, c in sorted(self.by_endpoint.items())},
            "events": dict(self.events),
        }


def rates(total: Counter[str] | dict[str, int]) -> dict[str, Any]:
    """Reads and hit rate from summed counters (one worker's or the cluster's)."""
    reads = total["hits"] + total["misses"] + total["stale_served"]
    return {"reads": reads, "hit_rate": round(total["hits"] / reads, 4) if reads else None}
