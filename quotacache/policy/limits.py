"""The rate limiter's decision: a pure function of (limits, recent calls, now).

Every limit is "at most N calls in any window of S seconds". Calls are counted in
one-second buckets (the Faust windowed table stores them; see ``ratelimit.py``). To decide
whether one more call is allowed, each limit sums its buckets from ``floor(now - S - skew)``
to ``floor(now)``: that covers at least the last ``S + skew`` seconds, so the count can only
over-estimate the calls in any real S-second window, never under-estimate it. ``skew``
absorbs the jitter between our decision and the upstream's arrival time.

A call is allowed only if every limit of every scope (the service's and the endpoint's) has
room, and it is then counted in all of them at once: the caller records it before it is
sent. ``headroom`` (a fraction) keeps a margin below each limit for counts lost in a crash.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from quotacache.settings import RateLimit

#: (scope, bucket second) -> calls recorded in that second.
BucketCounts = Callable[[str, int], int]


@dataclass(frozen=True)
class Scope:
    """A named set of limits that share one count (a service, or one of its endpoints)."""

    name: str
    limits: tuple[RateLimit, ...]
    #: The part of these limits the call may use, when it differs from the decision's
    #: ``share``. A service's limits (None) are competed for by all its endpoints, so each
    #: priority gets its share of them. An endpoint's own limits are mostly asked by calls
    #: of that endpoint's priority: those may use them fully, and only calls asked at a
    #: lower priority than the endpoint's keep a reserve there (``RateLimiter.check``).
    share: float | None = None


@dataclass(frozen=True)
class Decision:
    allowed: bool
    #: Seconds until the tightest blocking limit has room again (0 when allowed).
    wait: float = 0.0
    #: The first limit that said no, as "scope calls/seconds".
    blocked_by: str | None = None


def allowance(limit: RateLimit, headroom: float, share: float = 1.0) -> int:
    """How many calls we let ourselves make in one window of ``limit``.

    ``share`` (0..1) is the part of it a priority may use: low priorities stop early and
    leave the rest of the window to the critical ones.
    """
    return max(1, math.floor(limit.calls * (1.0 - headroom) * share))


def endpoint_share(shares: dict[str, float], asked: str, configured: str) -> float:
    """The part of an endpoint's own limits a call asked at priority ``asked`` may use:
    all of them at the endpoint's ``configured`` priority or above, less below it (a low
    batch on a critical endpoint leaves room for the critical refreshes)."""
    return min(1.0, shares[asked] / shares[configured])


def buckets(limit: RateLimit, now: float, skew: float) -> range:
    """The bucket seconds whose counts are summed for ``limit`` at ``now``."""
    return range(math.floor(now - limit.seconds - skew), math.floor(now) + 1)


def used(scope: str, limit: RateLimit, counts: BucketCounts, now: float, skew: float) -> int:
    """Calls counted against ``limit`` in ``scope`` at ``now``."""
    return sum(counts(scope, second) for second in buckets(limit, now, skew))


def _wait_until_room(scope: str, limit: RateLimit, counts: BucketCounts, now: float,
                     skew: float, room_needed: int) -> float:
    # The oldest buckets leave the window first: bucket b stops counting once
    # floor(t - S - skew) > b, i.e. at t = b + 1 + S + skew.
    freed = 0
    for second in buckets(limit, now, skew):
        freed += counts(scope, second)
        if freed >= room_needed:
            return max(0.0, second + 1 + limit.seconds + skew - now)
    return limit.seconds + skew


def decide(scopes: Sequence[Scope], counts: BucketCounts, now: float, *,
           headroom: float = 0.1, skew: float = 0.25, share: float = 1.0) -> Decision:
    """Allow one call only if every limit of every scope has room for it."""
    worst: Decision | None = None
    for scope in scopes:
        for limit in scope.limits:
            cap = allowance(limit, headroom, share if scope.share is None else scope.share)
            count = used(scope.name, limit, counts, now, skew)
            if count + 1 > cap:
                wait = _wait_until_room(scope.name, limit, counts, now, skew, count + 1 - cap)
                if worst is None or wait > worst.wait:
                    worst = Decision(False, wait, f"{scope.name} {limit}")
    return worst or Decision(True)
