"""The per-service queue of fetches waiting for budget, ordered by priority then age.

Duplicates of a key merge into one entry that keeps the highest priority and the oldest
request time. An entry whose data could no longer be delivered fresh (it has waited
longer than its endpoint's TTL) is dropped. The queue lives in the memory of the worker
that owns the service; after a crash, requests come again from readers and producers.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from quotacache.streams.records import FetchOrder
from quotacache.units import Priority


@dataclass(order=True)
class Queued:
    rank: int
    requested_at: float
    key: str = field(compare=False)
    order: FetchOrder = field(compare=False)
    blocked_counted: bool = field(default=False, compare=False)


class FetchQueue:
    def __init__(self, limit: int = 10_000):
        self.limit = limit
        self._entries: dict[str, Queued] = {}

    def add(self, key: str, order: FetchOrder) -> FetchOrder | None:
        """Queue (or merge) an order; returns an order pushed out when the queue is full."""
        existing = self._entries.get(key)
        rank = order.priority.rank
        if existing is not None:
            if rank < existing.rank:
                existing.rank, existing.order = rank, order.model_copy(
                    update={"requested_at": existing.requested_at})
            return None
        self._entries[key] = Queued(rank, order.requested_at, key, order)
        if len(self._entries) > self.limit:
            worst = max(self._entries.values())
            del self._entries[worst.key]
            return worst.order
        return None

    def in_order(self) -> list[Queued]:
        return sorted(self._entries.values())

    def remove(self, key: str) -> None:
        self._entries.pop(key, None)

    def drop_expired(self, now: float, ttl_of: dict[str, float]) -> list[FetchOrder]:
        """Remove and return orders that waited longer than their endpoint's TTL."""
        expired = [q for q in self._entries.values()
                   if now - q.requested_at > ttl_of.get(q.order.endpoint, float("inf"))]
        for queued in expired:
            del self._entries[queued.key]
        return [q.order for q in expired]

    def by_priority(self) -> dict[str, int]:
        counts = Counter(list(Priority)[q.rank].value for q in self._entries.values())
        return {p.value: counts.get(p.value, 0) for p in Priority}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries


class Backlog:
    """The fetches of the services this worker owns: queued, and calls under way."""

    def __init__(self) -> None:
        self.queues: defaultdict[str, FetchQueue] = defaultdict(FetchQueue)
        #: Upstream calls under way per service (at most its max_in_flight).
        self.calls_in_flight: Counter[str] = Counter()

    def by_priority(self, service: str) -> dict[str, int]:
        """Queued fetches of ``service`` per priority (all zero when it has none)."""
        queue = self.queues.get(service)
        return queue.by_priority() if queue is not None else FetchQueue().by_priority()
