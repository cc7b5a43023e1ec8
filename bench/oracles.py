"""Read rates, and the worth of calls, told by an oracle instead of estimated from the
reads so far.

``bench.policy_sim`` runs the policy with them (``--known-rates``, ``--known-process``,
``--known-reads``, ``--known-values``): what the policy reaches with each is a reference
point for what better estimates could win, and what is left to the scheduling itself.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from bench.trace import Trace
from quotacache.policy.demand import ReadRates
from quotacache.policy.dispatch import Valuation
from quotacache.policy.queue import Queued


class KnownRates(ReadRates):
    """Every key's true read rate, its reads over the whole trace: a policy with perfect
    knowledge of demand (and none of when reads come). What the policy reaches with it
    is what better rate estimates could still win; the rest is in the scheduling."""

    def __init__(self, trace: Trace):
        super().__init__()
        counts = Counter(read.key for read in trace.reads)
        self.known = {key: count / trace.duration for key, count in counts.items()}

    def rate(self, key: str, now: float) -> float:
        return self.known.get(key, 0.0)


class _Ahead(ReadRates):
    """Rates told by an oracle: a key's reads over its TTL ahead, a minute at most (the
    fresh reads a call made now can buy). ``read`` still counts the reads seen, as
    ``worth_renewing`` uses the time since a key's last one."""

    def __init__(self, trace: Trace, horizon: float = 60.0):
        super().__init__()
        self.ttls = trace.ttls
        self.horizon = horizon

    def ahead(self, key: str) -> float:
        return min(self.ttls[key.split("/", 1)[0]], self.horizon)


class KnownProcess(_Ahead):
    """Every key's expected reads a second over its TTL ahead, from the process that
    drew the trace (``bench.trace.Process``): a policy that knows how the reads are drawn
    (popularity, bursts, the spike and the shift, the trace's end) but not the draw. The
    built-in traces' reads are independent draws, so no estimate from the reads so far
    can know more of the reads to come. A reference point, not a bound: the policy's
    settings were tuned on estimated rates."""

    def __init__(self, trace: Trace, horizon: float = 60.0):
        if trace.process is None:
            raise ValueError(f"trace {trace.name!r} was not drawn by a known process "
                             "(a file trace): --known-process needs a built-in one")
        super().__init__(trace, horizon)
        self.process = trace.process

    def rate(self, key: str, now: float) -> float:
        ahead = self.ahead(key)
        return self.process.expected(key, now, now + ahead) / ahead


class KnownReads(_Ahead):
    """Every key's actual reads in its TTL ahead (a minute at most): foresight of the draw
    itself, key by key. What the policy still misses with it is in the scheduling (which
    keys get a window's slots while more keys are still to come) more than in the rates."""

    def __init__(self, trace: Trace, horizon: float = 60.0):
        super().__init__(trace, horizon)
        self.times = read_times(trace)

    def rate(self, key: str, now: float) -> float:
        ahead = self.ahead(key)
        times = self.times.get(key, [])
        return (bisect_left(times, now + ahead) - bisect_left(times, now)) / ahead


def read_times(trace: Trace) -> dict[str, list[float]]:
    """Each key's read times, in order."""
    times: dict[str, list[float]] = {}
    for read in trace.reads:
        times.setdefault(read.key, []).append(read.at)
    return times


@dataclass(frozen=True)
class KnownValues(Valuation):
    """The dispatch's valuation told every key's actual reads to come, to the trace's end:
    a call is worth the reads it makes fresh (those in the TTL after it lands that the
    current data does not already serve) and, for a key's first fetch,
    ``answered_weight`` times the key's later reads (misses turned into stale answers).
    The same ranking and reservation with the exact worth of every call: what the policy
    still misses with it, against the joint optimum of the same reads, is in the greedy
    structure (which keys get a window's few slots), not in what the rates know."""

    reads: Mapping[str, Sequence[float]] = field(default_factory=dict)
    answered_weight: float = 1.0

    @classmethod
    def of(cls, trace: Trace, latency: float, answered_weight: float = 1.0) -> KnownValues:
        return cls(ttl_of=dict(trace.ttls), latency=latency, reads=read_times(trace),
                   answered_weight=answered_weight)

    def between(self, key: str, start: float, end: float) -> int:
        """The key's reads after ``start``, up to ``end``."""
        times = self.reads.get(key, ())
        return max(0, bisect_right(times, end) - bisect_right(times, start))

    def value(self, queued: Queued, now: float) -> float:
        order = queued.order
        ttl = self.ttl(order.endpoint)
        lands = now + self.latency
        if order.fresh_until is None:
            reads = (self.between(queued.key, lands, lands + ttl) + self.answered_weight
                     * self.between(queued.key, lands + ttl, float("inf")))
        else:
            reads = self.between(queued.key, max(lands, order.fresh_until), lands + ttl)
        aging = 1.0 + self.aging * max(0.0, now - order.requested_at) / ttl  # as the policy
        return self.weights.get(order.priority.value, 1.0) * reads * aging

    def refresh_value(self, queued: Queued, now: float) -> float:
        """The renewal a call made now will want: the reads of the TTL after its data's."""
        ttl = self.ttl(queued.order.endpoint)
        lands = now + self.latency
        return (self.weights.get(queued.order.priority.value, 1.0)
                * self.between(queued.key, lands + ttl, lands + 2 * ttl))
