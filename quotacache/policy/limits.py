"""The rate limiter's decision: a pure function of (limits, recent calls, now).

Every limit is "at most N calls in any window of S seconds", counted by the upstream when
calls arrive. Each call counts from a time ``r`` we record: its decision, before it is
sent. The fetch agent sends it within half the jitter after that or not at all (it is
decided again), and the network delivers it ``d_min`` plus at most the other half of the
jitter after it leaves. So a call arrives at or before ``r + d_min + jitter``. Once its
answer is back, at ``R``, the upstream has counted it, at or before ``R``: its record may
move back to ``R - jitter`` (``counts_from``; never later than the decision), which
needs no assumption about the network at all. The rule:

    a call may be decided at ``now`` only if fewer than N calls count from times in
    ``(now - S - jitter, now]``.

Bound: take any upstream window ``[a, a + S)`` and, of the calls arriving in it, the one
decided last, at ``t``. It arrives after ``t + d_min``, so ``t < a + S - d_min``. Every
other call of the window was decided at or before ``t`` and arrives at or after ``a``; a
record, moved or not, is never below its call's arrival minus ``d_min + jitter``, so at
``t`` each of theirs lay in ``[a - d_min - jitter, t]``, inside ``(t - S - jitter, t]``.
So when the last call was decided, fewer than N others counted, and the window holds at
most N arrivals, whatever the order and spacing of the decisions and answers.
``jitter`` (``arrival_jitter``, 0.5 s by default) is the spread of delays allowed for.
Exact times (not buckets) keep the count tight: nothing is counted that the upstream
could not count.

A call is allowed only if every limit of every scope (the service's and the endpoint's)
has room, and it is then recorded in all of them at once. ``headroom`` keeps a fraction of
each limit unused, for deployments whose counts could be lost (see the README).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from quotacache.units import RateLimit

#: scope -> the times its recent calls count from (any order; older ones are ignored).
CallTimes = Callable[[str], Sequence[float]]


def counts_from(decided: float, answered: float, jitter: float) -> float:
    """Where a call decided (and recorded) at ``decided`` counts from once its answer came
    back at ``answered``: the upstream counted it by then, so from a jitter before that,
    never later than its decision. Rounded up to the millisecond, as records are kept."""
    return min(decided, math.ceil((answered - jitter) * 1000.0) / 1000.0)


@dataclass(frozen=True)
class Scope:
    """A named set of limits that share one count (a service, or one of its endpoints)."""

    name: str
    limits: tuple[RateLimit, ...]


@dataclass(frozen=True)
class Decision:
    allowed: bool
    #: Seconds until the tightest blocking limit has room again (0 when allowed).
    wait: float = 0.0
    #: The first limit that said no, as "scope calls/seconds".
    blocked_by: str | None = None


def allowance(limit: RateLimit, headroom: float = 0.0) -> int:
    """How many calls we let ourselves make in one window of ``limit``."""
    return max(1, math.floor(limit.calls * (1.0 - headroom) + 1e-9))


def in_window(times: Sequence[float], limit: RateLimit, now: float, jitter: float
              ) -> list[float]:
    """The recorded times that still count against ``limit`` at ``now``, oldest first."""
    start = now - limit.seconds - jitter
    return sorted(t for t in times if t > start)


def used(times: Sequence[float], limit: RateLimit, now: float, jitter: float) -> int:
    """Calls counted against ``limit`` at ``now``."""
    start = now - limit.seconds - jitter
    return sum(1 for t in times if t > start)


def frees_at(times: Sequence[float], limit: RateLimit, now: float, jitter: float
             ) -> list[float]:
    """When each counted call stops counting, soonest first: one more slot each time."""
    return [t + limit.seconds + jitter for t in in_window(times, limit, now, jitter)]


def room(times: Sequence[float], limit: RateLimit, now: float, *, headroom: float = 0.0,
         jitter: float = 0.25) -> int:
    """Calls that may still be sent now under ``limit``."""
    return max(0, allowance(limit, headroom) - used(times, limit, now, jitter))


def decide(scopes: Sequence[Scope], times_of: CallTimes, now: float, *,
           headroom: float = 0.0, jitter: float = 0.25) -> Decision:
    """Allow one call only if every limit of every scope has room for it."""
    worst: Decision | None = None
    for scope in scopes:
        times = times_of(scope.name)
        for limit in scope.limits:
            cap = allowance(limit, headroom)
            counted = in_window(times, limit, now, jitter)
            if len(counted) + 1 > cap:
                # The oldest calls leave first; room returns when enough of them have.
                wait = counted[len(counted) - cap] + limit.seconds + jitter - now
                if worst is None or wait > worst.wait:
                    worst = Decision(False, max(0.0, wait), f"{scope.name} {limit}")
    return worst or Decision(True)
