"""The scheduling policy alone, replayed on a trace in simulated time: seconds, not minutes.

The same pure code the workers run (``quotacache.policy``: read rates, the queue, the
value-based dispatch, the limits) driven by a simulated clock: reads arrive as the trace
says, calls complete after ``latency``, nothing else costs time. It shows what the policy
can reach before a full benchmark run measures what the pipeline reaches, and it is how
the policy's parameters are tuned: ``python -m bench.policy_sim --trace zipf``.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
from dataclasses import dataclass, field

from bench.trace import Trace, named
from quotacache.policy.demand import ReadRates
from quotacache.policy.dispatch import Valuation, select_calls
from quotacache.policy.health import ServiceHealth
from quotacache.policy.limits import Decision, Scope, decide
from quotacache.policy.queue import MIN_READS, FetchQueue
from quotacache.streams.records import FetchOrder
from quotacache.units import Priority, RateLimit

SERVICE = "cryptometer"
TICK = 0.25


class SimBudget:
    """Exact send times per scope, as the rate limiter table keeps them."""

    def __init__(self, trace: Trace, headroom: float = 0.0, jitter: float = 0.25):
        self.headroom = headroom
        self.jitter = jitter
        self.service = Scope(SERVICE, tuple(RateLimit(calls=lim.calls, seconds=lim.seconds)
                                            for lim in trace.limits.service))
        self.endpoint_limits = tuple(RateLimit(calls=lim.calls, seconds=lim.seconds)
                                     for lim in trace.limits.endpoint)
        self.sent: dict[str, list[float]] = {}

    def scopes(self, endpoint: str) -> list[Scope]:
        return [self.service, Scope(f"{SERVICE}/{endpoint}", self.endpoint_limits)]

    def times(self, scope: str) -> list[float]:
        return self.sent.get(scope, [])

    def check(self, endpoint: str, now: float) -> Decision:
        return decide(self.scopes(endpoint), self.times, now, headroom=self.headroom,
                      jitter=self.jitter)

    def record(self, endpoint: str, now: float) -> None:
        for scope in self.scopes(endpoint):
            self.sent.setdefault(scope.name, []).append(now)


@dataclass
class Result:
    reads: int = 0
    fresh: int = 0
    answered: int = 0
    critical_reads: int = 0
    critical_fresh: int = 0
    calls: list[tuple[float, str]] = field(default_factory=list)

    def line(self) -> str:
        return (f"fresh {self.fresh / self.reads:6.1%}  answered {self.answered / self.reads:6.1%}"
                f"  critical fresh {self.critical_fresh}/{self.critical_reads}"
                f"  calls {len(self.calls)}")


def priority_of(trace: Trace, endpoint: str) -> Priority:
    from quotacache.services import CRYPTOMETER

    return Priority(CRYPTOMETER["endpoints"][endpoint]["priority"])


def simulate(trace: Trace, *, latency: float = 0.35, valuation: Valuation | None = None,
             inflight_timeout: float = 30.0, max_in_flight: int = 8) -> Result:
    valuation = valuation or Valuation(ttl_of=dict(trace.ttls), latency=latency)
    budget = SimBudget(trace)
    rates = ReadRates()
    queue = FetchQueue()
    health = ServiceHealth()
    fetched: dict[str, float] = {}  # key -> fetched_at (completion)
    inflight: dict[str, float] = {}  # key -> claimed until
    landing: list[tuple[float, int, str]] = []  # (completes at, seq, key)
    seq = itertools.count()
    result = Result()
    in_flight = 0
    priorities = {e: priority_of(trace, e) for e in trace.ttls}

    def order(key: str, now: float, reason: str) -> None:
        endpoint, symbol = key.split("/", 1)
        at = fetched.get(key)
        queue.add(key, FetchOrder(
            service=SERVICE, endpoint=endpoint, symbol=symbol, priority=priorities[endpoint],
            reason=reason, requested_at=now, rate=rates.rate(key, now),
            fresh_until=None if at is None else at + trace.ttls[endpoint]))

    def dispatch(now: float) -> None:
        nonlocal in_flight
        queue.drop_unread(now, dict(trace.ttls))
        chosen = select_calls(queue, health, budget, now, service=SERVICE, cooldown=30,
                              free_slots=max_in_flight - in_flight, valuation=valuation)
        for queued in chosen.calls:
            queue.remove(queued.key)
            in_flight += 1
            result.calls.append((now, queued.key))
            heapq.heappush(landing, (now + latency, next(seq), queued.key))

    def land_until(now: float) -> None:
        nonlocal in_flight
        while landing and landing[0][0] <= now:
            at, _, key = heapq.heappop(landing)
            in_flight -= 1
            fetched[key] = at
            inflight.pop(key, None)
            endpoint = key.split("/", 1)[0]
            if rates.rate(key, at) * trace.ttls[endpoint] >= MIN_READS:
                order(key, at, "planned")
            dispatch(at)

    reads = iter(trace.reads)
    read = next(reads, None)
    now = 0.0
    next_tick = 0.0
    while read is not None or landing:
        upcoming = min(read.at if read is not None else float("inf"),
                       landing[0][0] if landing else float("inf"), next_tick)
        now = upcoming
        land_until(now)
        if read is not None and read.at <= now:
            key = read.key
            rates.read(key, now)
            ttl = trace.ttls[read.endpoint]
            at = fetched.get(key)
            result.reads += 1
            critical = trace.critical(read)
            result.critical_reads += critical
            if at is not None:
                result.answered += 1
                if now - at <= ttl:
                    result.fresh += 1
                    result.critical_fresh += critical
            if (at is None or now - at > ttl) and inflight.get(key, 0) <= now:
                inflight[key] = now + inflight_timeout
                order(key, now, "read")
            dispatch(now)
            read = next(reads, None)
        if now >= next_tick:
            dispatch(now)
            next_tick = now + TICK
            if read is None and not landing:
                break
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trace", default="zipf")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    trace = named(args.trace, seed=args.seed)
    print(f"{trace.name}: {len(trace.reads)} reads, {len(trace.keys())} keys")
    print(simulate(trace).line())


if __name__ == "__main__":
    main()
