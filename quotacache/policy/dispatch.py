"""Which queued fetches to call now: a pure function of the queue, health, budget and clock.

Every call is judged by the fresh reads it is expected to buy: the key's read rate times
the fresh seconds the call adds (its TTL, less what the current data still covers), times
its priority's weight. A key without data also buys answered reads: its first fetch turns
misses into answers, worth ``answered_bonus`` more seconds of reads. Keys nobody reads buy
nothing and are left alone.

The selection is work-conserving: whenever every limit has room, the most valuable
eligible calls are made; a slot is never left idle while an eligible call waits, except
to keep it for a more valuable call that is sure to come. That is the reservation: a
call may take a slot only if the planned refreshes worth more (``reserve_above`` times
more, unless they are critical), due while the slot stays taken (``S + jitter`` seconds),
still find room, counting the slots that free up before each of them is due (or a
little after: ``slack``). Critical work is protected this way by its own demand: when
many critical keys are about to expire, their slots are kept; when none are, nothing
idles.

At start-up every read is a first read: first fetches wait until ``hold_until``, a
moment after the worker's first order for the service, so the first slots of a window go
to the keys read most rather than to the keys read first.

A key whose data is still fresh is not called (one call per key per TTL), unless the
request forces it; a planned refresh becomes eligible ``lead`` seconds before its data
expires (latency plus a margin), so the new data lands as the old one stops being
fresh. Each selected call is recorded in the budget before the next decision, so the
selection never exceeds a limit.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from quotacache.policy.health import ServiceHealth
from quotacache.policy.limits import Decision, Scope, allowance, frees_at, used
from quotacache.policy.queue import FetchQueue, Queued
from quotacache.settings import ServiceConfig
from quotacache.streams.records import FetchOrder
from quotacache.units import Priority

#: Value weight of each priority: critical reads count this many times a medium one.
DEFAULT_WEIGHTS = {"critical": 4.0, "high": 2.0, "medium": 1.0, "low": 1.0}


class Budget(Protocol):
    """The limiter as the dispatcher sees it (``tables.ratelimit.ServiceBudget``)."""

    headroom: float
    jitter: float

    def scopes(self, endpoint: str) -> list[Scope]: ...

    def check(self, endpoint: str, now: float) -> Decision: ...

    def record(self, endpoint: str, now: float) -> None: ...

    def times(self, scope: str) -> Sequence[float]: ...


@dataclass(frozen=True)
class Valuation:
    """How calls are valued: endpoint TTLs, priority weights, call latency."""

    ttl_of: Mapping[str, float]
    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    latency: float = 0.5
    #: Seconds of reads a key's first fetch is worth beyond its TTL (misses answered).
    answered_bonus: float = 0.0
    #: How much earlier than ``latency`` before expiry a refresh may go: the time the
    #: data takes from the upstream's answer to the cache (topic hops).
    margin: float = 0.0
    #: How fast a waiting request gains value: ``1 + aging * waited / ttl``.
    aging: float = 1.0
    #: Reserve room for the refresh each call made now will want when its data expires
    #: (a call's own next refresh is foreseeable before it is queued).
    foresee: bool = True
    #: A slot is kept for a planned refresh only if that refresh is worth this many times
    #: the call that would take the slot now: a planned refresh is a forecast (its key's
    #: reads may fade before it is due), a call made now is sure. Tuned on the bench's
    #: traces with ``bench.policy_sim`` (4 traces x 3 seeds, mean fraction of the optima,
    #: fresh / answered: 1 gives 0.860 / 0.865, 3 gives 0.870 / 0.875). Critical
    #: refreshes keep theirs at any worth above the call's: their protection is the point
    #: of the reservation.
    reserve_above: float = 3.0
    #: First fetches wait until then: at start-up every read is a first read, and a
    #: moment of reads shows which keys are popular before the scarce slots are spent.
    hold_until: float = 0.0
    #: How late, as a share of its TTL, a non-critical planned refresh may go for want
    #: of a slot rather than have a slot kept idle for it. A key whose TTL is as long as its
    #: endpoint's window falls due a moment before its own last call leaves the window:
    #: waiting for that moment costs a few seconds of freshness; keeping a second slot
    #: for it idles that slot for a whole window.
    slack: float = 0.2
    #: Reads waiting now for a key's call (``?wait=``) are sure reads, not a forecast: a
    #: call that lands before they give up answers each of them fresh. Each counts this
    #: many weighted reads for a key without data (a miss turned into an answer) and for
    #: a key with stale data (a stale answer turned fresh). Tuned with
    #: ``bench.policy_sim`` (README, "Where the rest of the gap is").
    waiting_miss: float = 10.0
    waiting_stale: float = 2.0
    #: Whether the room kept for planned refreshes is judged with the waiting reads
    #: counted; by default they only order the calls that fit (counted in the room too,
    #: they took the slots of critical refreshes: critical fresh fell 1 point).
    waiting_takes_room: bool = False

    @classmethod
    def of(cls, config: ServiceConfig, *, latency: float, hold_until: float = 0.0
           ) -> Valuation:
        """How a service's settings value its calls (the workers' and the simulation's)."""
        return cls(ttl_of={name: spec.ttl for name, spec in config.endpoints.items()},
                   weights=config.priority_weights, latency=latency,
                   answered_bonus=config.answered_bonus,
                   waiting_miss=config.waiting_miss_worth,
                   waiting_stale=config.waiting_stale_worth,
                   margin=config.refresh_margin, reserve_above=config.reserve_above,
                   hold_until=hold_until)

    def ttl(self, endpoint: str) -> float:
        """The endpoint's TTL (60 s for one the valuation was not told of)."""
        return self.ttl_of.get(endpoint, 60.0)

    def refresh_value(self, queued: Queued, now: float) -> float:
        """What the refresh of a key called now will be worth when it falls due."""
        order = queued.order
        ttl = self.ttl(order.endpoint)
        rate = max(queued.rate(now), 1.0 / (ttl + self.answered_bonus))
        return self.weights.get(order.priority.value, 1.0) * rate * ttl

    def lead(self, endpoint: str) -> float:
        """How long before its data expires a key may be refreshed: the call's latency
        plus the margin, or a twentieth of the TTL when that is longer (a busy worker
        is late by more on long TTLs, and a call earlier by 5 % costs 5 % more calls)."""
        return self.latency + max(self.margin, 0.05 * self.ttl(endpoint))

    def eligible(self, queued: Queued, now: float) -> bool:
        order = queued.order
        if order.fresh_until is None:
            return order.force or now >= self.hold_until
        return order.force or now >= order.fresh_until - self.lead(order.endpoint)

    def planned(self, due: float, value: float, order: FetchOrder) -> _Planned:
        """A refresh of ``order``'s key that will want a slot at ``due``. Only a
        non-critical one may wait for a slot (``slack``): critical ones keep theirs."""
        critical = order.priority is Priority.CRITICAL
        slack = 0.0 if critical else self.slack * self.ttl(order.endpoint)
        return _Planned(due, value, order.endpoint, critical, slack)

    def due(self, queued: Queued) -> float:
        """When a planned refresh becomes eligible."""
        return (queued.order.fresh_until or 0.0) - self.lead(queued.order.endpoint)

    def waiting_value(self, queued: Queued, readers: int) -> float:
        """What ``readers`` waiting now for this key's call add to its value."""
        if readers <= 0:
            return 0.0
        per_read = self.waiting_miss if queued.order.fresh_until is None else self.waiting_stale
        return self.weights.get(queued.order.priority.value, 1.0) * per_read * readers

    def value(self, queued: Queued, now: float) -> float:
        """Expected fresh (and newly answered) reads a call made now buys, weighted."""
        order = queued.order
        ttl = self.ttl(order.endpoint)
        arrives = now + self.latency
        if order.fresh_until is None:
            seconds = ttl + self.answered_bonus
        else:
            seconds = ttl - max(0.0, min(ttl, order.fresh_until - arrives))
        rate = max(queued.rate(now), 1.0 / (ttl + self.answered_bonus))
        waited = max(0.0, now - order.requested_at)
        aging = 1.0 + self.aging * waited / ttl  # no request waits for ever behind busier keys
        return self.weights.get(order.priority.value, 1.0) * rate * seconds * aging


@dataclass
class Selection:
    calls: list[Queued] = field(default_factory=list)
    #: Eligible entries left waiting for budget (limits, reservation, health, slots).
    blocked: list[Queued] = field(default_factory=list)
    stopped_by: str | None = None


@dataclass(frozen=True)
class _Planned:
    due: float
    value: float
    endpoint: str
    #: Reserved for at any value above the call's (others: ``reserve_above`` times).
    critical: bool = False
    #: Seconds after ``due`` that a freed slot still serves it (``Valuation.slack``).
    slack: float = 0.0


def select_calls(queue: FetchQueue, health: ServiceHealth, budget: Budget, now: float, *,
                 service: str, cooldown: float, free_slots: int,
                 valuation: Valuation,
                 waiting: Callable[[str], int] | None = None) -> Selection:
    """The calls to make now (see the module). ``waiting(key)``: readers waiting now for
    the key's call, where the caller can see them."""
    selection = Selection()
    entries = queue.entries()
    eligible = [q for q in entries if valuation.eligible(q, now)]
    if not eligible:
        return selection
    admitted, why = health.admits(now, cooldown)
    if not admitted or free_slots <= 0:  # nothing can be called: no need to value anything
        selection.stopped_by = why or "no free call slot"
        selection.blocked = eligible
        return selection
    # Only calls whose limits have room now are valued: a limit without room refuses its
    # calls whatever they are worth (and calls made now only take room). A flood of new
    # keys on full endpoints costs a scan of the queue per order, not a valuation.
    callable_endpoints = {endpoint for endpoint in {q.order.endpoint for q in eligible}
                          if budget.check(endpoint, now).allowed}
    candidates = [q for q in eligible if q.order.endpoint in callable_endpoints]
    selection.blocked = [q for q in eligible if q.order.endpoint not in callable_endpoints]
    if not candidates:
        selection.stopped_by = "no limit has room"
        return selection
    values = {q.key: valuation.value(q, now) for q in candidates}
    ranks = values
    if waiting is not None:
        ranks = {q.key: values[q.key] + valuation.waiting_value(q, waiting(q.key))
                 for q in candidates}
        if valuation.waiting_takes_room:
            values = ranks
    ready = sorted(candidates, key=lambda q: ranks[q.key], reverse=True)
    now_eligible = {q.key for q in eligible}
    planned: list[_Planned] | None = None  # valued when a call asks for room (often never)
    # Endpoints whose limit refuses their next call, whatever it is worth.
    blocked_endpoints: set[str] = set()
    # The worth of the best call the room kept for planned refreshes refused, in the
    # service's scope and per endpoint: a call worth no more is refused there too (the
    # room only shrinks as calls are made). ``ready`` goes down in rank; ranks are the
    # values unless waiting readers count only in the ranks (``waiting_takes_room``).
    service_refused = -1.0
    endpoint_refused: dict[str, float] = {}
    for queued in ready:
        if selection.stopped_by:
            selection.blocked.append(queued)
            continue
        admitted, why = health.admits(now, cooldown)
        if not admitted or free_slots <= 0:
            selection.stopped_by = why or "no free call slot"
            selection.blocked.append(queued)
            continue
        endpoint = queued.order.endpoint
        value = values[queued.key]
        if endpoint in blocked_endpoints or value <= max(
                service_refused, endpoint_refused.get(endpoint, -1.0)):
            selection.blocked.append(queued)
            continue
        decision = budget.check(endpoint, now)
        if not decision.allowed:
            selection.blocked.append(queued)
            if decision.blocked_by and decision.blocked_by.startswith(service + " "):
                selection.stopped_by = decision.blocked_by
            else:
                blocked_endpoints.add(endpoint)
            continue
        if planned is None:
            planned = sorted((valuation.planned(valuation.due(q),
                                                valuation.value(q, valuation.due(q)), q.order)
                              for q in entries if q.key not in now_eligible),
                             key=lambda p: p.due)
        kept_by = _room_kept(budget, endpoint, now, value, valuation.reserve_above, planned)
        if kept_by is not None:
            selection.blocked.append(queued)
            if kept_by == service:  # the service's room: no call worth less fits either
                service_refused = max(service_refused, value)
            else:
                endpoint_refused[endpoint] = max(endpoint_refused.get(endpoint, -1.0), value)
            continue
        budget.record(endpoint, now)
        if valuation.foresee:
            ttl = valuation.ttl(endpoint)
            insort(planned, valuation.planned(now + ttl - valuation.margin,
                                              valuation.refresh_value(queued, now),
                                              queued.order),
                   key=lambda p: p.due)
        health.on_call(now, cooldown)
        free_slots -= 1
        selection.calls.append(queued)
    if selection.stopped_by is None and service_refused >= 0.0:
        selection.stopped_by = f"{service}: room kept for planned refreshes"
    return selection


def _room_kept(budget: Budget, endpoint: str, now: float, value: float, above: float,
               planned: list[_Planned]) -> str | None:
    """The scope whose room is kept for planned refreshes worth more than ``value``
    (``above`` times more, unless critical), which this call would leave without room;
    None when the call leaves room in every scope.

    For each limit of each scope the call counts in: the j-th more valuable refresh due
    before this call's slot frees again needs ``j`` slots by its due time, out of the
    room left now (less this call's) plus the slots that free up by then.
    """
    for scope in budget.scopes(endpoint):
        times = budget.times(scope.name)
        endpoint_scope = "/" in scope.name  # "service/endpoint": only its own refreshes
        mine = [p for p in planned if p.value > (value if p.critical else value * above)
                and (not endpoint_scope or p.endpoint == endpoint)]
        if not mine:
            continue
        for limit in scope.limits:
            horizon = now + limit.seconds + budget.jitter
            needed = sorted(p.due + p.slack for p in mine if p.due < horizon)
            if not needed:
                continue
            room = allowance(limit, budget.headroom) - used(times, limit, now, budget.jitter)
            freed = frees_at(times, limit, now, budget.jitter)
            for j, latest in enumerate(needed, start=1):
                if j > room - 1 + bisect_right(freed, latest):
                    return scope.name
    return None

