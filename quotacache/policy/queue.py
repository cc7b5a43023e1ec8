"""The per-service queue of fetches: every key the service may call, with what it is worth.

An entry is either a request (a read found the key stale or missing, a producer asked)
or a planned refresh (a key read often, whose data will expire): both carry the key's
read rate and when its data stops being fresh, so the dispatcher can judge each by the
fresh reads a call would buy (``policy.dispatch``). Orders for one key merge into one
entry: the newest rate and freshness, the oldest request time, the highest priority.

An entry's rate fades with the time since it was measured, so a key nobody reads any
more loses its claim on the budget; once a call could buy less than ``MIN_READS`` fresh
reads it is dropped; a first fetch too, once it has waited ``FIRST_FETCH_PATIENCE``
(or its TTL) and no reader waits for it: a key read once, long ago, is not called for
nobody (while the budget has room, it was called long before). The queue is bounded:
past ``limit`` the least valuable entries go, a tenth of the queue at a time (one scan
of the queue per tenth, not per order, however fast a flood of new keys comes).
The queue lives in the memory of the worker that owns the service; after a crash,
requests come again from readers and producers.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from quotacache.policy.health import PROBE_WAIT
from quotacache.streams.records import FetchOrder
from quotacache.units import Priority

#: Reads per second fade with this time constant (seconds) after they were measured.
RATE_TAU = 60.0
#: An order whose call would buy fewer expected reads than this is dropped.
MIN_READS = 0.05
#: How long a first fetch nobody reads any more waits before it is dropped (seconds).
FIRST_FETCH_PATIENCE = 120.0
#: A waiting key's order is sent again once its read rate has grown by this factor
#: (``tables.inflight``): reads of a waiting key are not ordered again otherwise.
REGRADE = 1.5


@dataclass
class Queued:
    key: str
    order: FetchOrder
    #: The key's read rate when last measured, and when that was.
    measured: float = 0.0
    measured_at: float = 0.0
    blocked_counted: bool = field(default=False)

    def rate(self, now: float) -> float:
        """The key's read rate now: as measured, faded by the time since."""
        return self.measured * math.exp(-max(0.0, now - self.measured_at) / RATE_TAU)

    def readers_waiting(self, here: int, lands: float) -> int:
        """Readers a call landing at ``lands`` answers: the ``here`` waiting on this
        worker, or at least the one the order says waits on the key's owner till then."""
        return max(here, int((self.order.readers_until or 0.0) >= lands))


class FetchQueue:
    def __init__(self, limit: int = 10_000):
        self.limit = limit
        self._entries: dict[str, Queued] = {}

    def add(self, key: str, order: FetchOrder) -> list[FetchOrder]:
        """Queue (or merge) an order; returns the orders pushed out when the queue is full."""
        existing = self._entries.get(key)
        at = order.requested_at
        rate_at = at if order.rate_at is None else order.rate_at
        if existing is not None:
            old = existing.order
            existing.measured = max(order.rate, existing.rate(rate_at))
            existing.measured_at = max(rate_at, existing.measured_at)
            existing.order = order.model_copy(update={
                "priority": min(order.priority, old.priority, key=lambda p: p.rank),
                "requested_at": min(at, old.requested_at),
                "force": order.force or old.force,
                "attempt": max(order.attempt, old.attempt),
                "rerank": order.rerank and old.rerank,
                "readers_until": max(order.readers_until or 0.0, old.readers_until or 0.0)
                or None})
            return []
        self._entries[key] = Queued(key, order, order.rate, rate_at)
        if len(self._entries) <= self.limit:
            return []
        now = order.requested_at
        ranked = sorted(self._entries.values(),
                        key=lambda q: (q.rate(now), -q.order.priority.rank))
        worst = ranked[:len(self._entries) - self.limit + self.limit // 10]
        for queued in worst:
            del self._entries[queued.key]
        return [queued.order for queued in worst]

    def entries(self) -> list[Queued]:
        return list(self._entries.values())

    def get(self, key: str) -> Queued | None:
        return self._entries.get(key)

    def remove(self, key: str) -> None:
        self._entries.pop(key, None)

    def drop_unread(self, now: float, ttl_of: dict[str, float]) -> list[FetchOrder]:
        """Remove and return orders nobody reads any more: a call would buy less than
        ``MIN_READS`` fresh reads, no reader waits for it, and a first fetch has waited
        its patience. Forced orders are kept."""
        def unread(q: Queued) -> bool:
            order, ttl = q.order, ttl_of.get(q.order.endpoint, 0.0)
            waited_for = order.readers_until is not None and order.readers_until >= now
            if order.force or waited_for or q.rate(now) * ttl >= MIN_READS:
                return False
            return (order.fresh_until is not None
                    or now - order.requested_at > max(FIRST_FETCH_PATIENCE, ttl))

        gone = [q for q in self._entries.values() if unread(q)]
        for queued in gone:
            del self._entries[queued.key]
        return [q.order for q in gone]

    def by_priority(self) -> dict[str, int]:
        counts = Counter(q.order.priority.value for q in self._entries.values())
        return {p.value: counts.get(p.value, 0) for p in Priority}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries


class Backlog:
    """The fetches of the services this worker owns: queued, and calls under way."""

    def __init__(self) -> None:
        self.queues: defaultdict[str, FetchQueue] = defaultdict(FetchQueue)
        #: Upstream calls under way per service (at most its max_in_flight), as the times
        #: the limiter counted them (an upstream's rate hint may not count them yet).
        self.under_way: defaultdict[str, list[float]] = defaultdict(list)
        #: Keys whose upstream call is under way (an order for one of them is not queued).
        self.calling: set[str] = set()
        #: A 429's pause, known from its answer on. Its feedback goes round the fetch
        #: topic before the health table holds it (and the probe that follows the
        #: pause): orders ahead of it must not be called meanwhile, however long the
        #: round takes (``PROBE_WAIT`` at most past the pause, if the feedback is lost).
        self.paused_until: dict[str, float] = {}
        self.pauses_unconfirmed: Counter[str] = Counter()
        #: When this worker heard the first order of each service: its first fetches
        #: wait ``first_fetch_hold`` after it (``policy.dispatch.Valuation.hold_until``).
        self.first_order_at: dict[str, float] = {}
        #: Seconds an upstream call of each service takes (moving average).
        self.latency: defaultdict[str, float] = defaultdict(lambda: 0.5)

    def calls_in_flight(self, service: str) -> int:
        return len(self.under_way.get(service, ()))

    def pause(self, service: str, until: float) -> None:
        self.paused_until[service] = max(self.paused_until.get(service, 0.0), until)
        self.pauses_unconfirmed[service] += 1

    def confirm_pause(self, service: str) -> None:
        """The health table holds a pause now: once it holds every one, it takes over."""
        if self.pauses_unconfirmed[service] > 0:
            self.pauses_unconfirmed[service] -= 1

    def paused(self, service: str, now: float) -> bool:
        until = self.paused_until.get(service, 0.0)
        if self.pauses_unconfirmed.get(service, 0) > 0:
            until += PROBE_WAIT
        return until > now

    def observe_latency(self, service: str, seconds: float) -> None:
        self.latency[service] += 0.2 * (seconds - self.latency[service])

    def by_priority(self, service: str) -> dict[str, int]:
        """Queued fetches of ``service`` per priority (all zero when it has none)."""
        queue = self.queues.get(service)
        return queue.by_priority() if queue is not None else FetchQueue().by_priority()
