"""Freshness of a cache entry, decided on read from its age, its TTL and a staleness cap.

Entries are never deleted when their TTL passes: a stale entry is what a reader gets when
the budget or the upstream refuses a refresh. Only past ``max_staleness`` is an entry
expired (answered as a miss, then tombstoned by the sweeper).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Freshness(StrEnum):
    HIT = "HIT"
    STALE = "STALE"
    MISS = "MISS"


@dataclass(frozen=True)
class CacheEntry:
    """What the cache table holds for one key."""

    data: Any
    fetched_at: float
    ttl: float

    def age(self, now: float) -> float:
        return max(0.0, now - self.fetched_at)

    def is_fresh(self, now: float, max_age: float | None = None) -> bool:
        limit = self.ttl if max_age is None else min(self.ttl, max_age)
        return self.age(now) < limit

    def is_expired(self, now: float, max_staleness: float) -> bool:
        return self.age(now) >= max_staleness

    def to_dict(self) -> dict[str, Any]:
        return {"data": self.data, "fetched_at": self.fetched_at, "ttl": self.ttl}

    @classmethod
    def from_dict(cls, value: dict[str, Any] | None) -> CacheEntry | None:
        if not value:
            return None
        return cls(data=value["data"], fetched_at=float(value["fetched_at"]),
                   ttl=float(value["ttl"]))


def classify(entry: CacheEntry | None, now: float, max_staleness: float,
             max_age: float | None = None) -> Freshness:
    """HIT when fresh, STALE when past its TTL but within ``max_staleness``, else MISS."""
    if entry is None or entry.is_expired(now, max_staleness):
        return Freshness.MISS
    if entry.is_fresh(now, max_age):
        return Freshness.HIT
    return Freshness.STALE
