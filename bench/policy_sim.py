"""The scheduling policy alone, replayed on a trace in simulated time: seconds, not minutes.

The same pure code the workers run (``quotacache.policy``: read rates, the queue, the
value-based dispatch, the limits), with the settings the bench's workers run the trace
with (``service_config``), driven by a simulated clock: reads arrive as the trace
says, calls complete after ``latency``, and a read of a stale or missing key waits up to
``WAIT`` for its refresh, as the bench's reads do; nothing else costs time. It shows
what the policy can reach before a full benchmark run measures what the pipeline
reaches, and it is how the policy's parameters are tuned: ``python -m bench.policy_sim
--trace zipf``. With ``--known-rates`` the policy is given every key's true read rate
(its reads over the whole trace), with ``--known-process`` the process that drew the
reads (``KnownProcess``), with ``--known-reads`` each key's actual reads in its TTL
ahead (``KnownReads``): reference points for what better estimates could win. With
``--known-values`` the dispatch is told the exact worth of every call, from all the reads
to come (``KnownValues``): what it misses then is in its greedy structure.
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import itertools
import tempfile
from bisect import bisect_left
from dataclasses import dataclass, field
from pathlib import Path

from bench.oracles import KnownProcess, KnownRates, KnownReads, KnownValues
from bench.systems import WAIT, quotacache_config
from bench.trace import LATENCY, Trace, named
from quotacache.policy.demand import ReadRates
from quotacache.policy.dispatch import Valuation, select_calls
from quotacache.policy.health import ServiceHealth
from quotacache.policy.limits import Decision, Scope, counts_from, decide
from quotacache.policy.queue import REGRADE, FetchQueue
from quotacache.settings import ServiceConfig, Settings, load_settings
from quotacache.streams.records import FetchOrder
from quotacache.units import Priority, RateLimit

SERVICE = "cryptometer"
TICK = 0.25


class SimBudget:
    """The times each scope's calls count from, as the workers' limiter has them: a call
    answered ``latency`` after its decision counts from a jitter before its answer
    (``RateLimiter.answered``). Simulated calls always are, and the count from the
    decision matters only a window later, so the record is the moved one at once."""

    def __init__(self, trace: Trace, *, headroom: float, jitter: float, latency: float):
        self.headroom = headroom
        self.jitter = jitter
        self.latency = latency
        self.service = Scope(SERVICE, tuple(RateLimit(calls=lim.calls, seconds=lim.seconds)
                                            for lim in trace.limits.service))
        self.endpoint_limits = tuple(RateLimit(calls=lim.calls, seconds=lim.seconds)
                                     for lim in trace.limits.endpoint)
        self.counted: dict[str, list[float]] = {}

    def scopes(self, endpoint: str) -> list[Scope]:
        return [self.service, Scope(f"{SERVICE}/{endpoint}", self.endpoint_limits)]

    def times(self, scope: str) -> list[float]:
        return self.counted.get(scope, [])

    def check(self, endpoint: str, now: float) -> Decision:
        return decide(self.scopes(endpoint), self.times, now, headroom=self.headroom,
                      jitter=self.jitter)

    def record(self, endpoint: str, now: float) -> None:
        longest = max(lim.seconds for lim in (*self.service.limits, *self.endpoint_limits))
        for scope in self.scopes(endpoint):
            times = self.counted.setdefault(scope.name, [])
            times.append(counts_from(now, now + self.latency, self.jitter))
            # Calls older than every window count nowhere: forget them (speed only).
            while times and times[0] <= now - longest - self.jitter - 1.0:
                times.pop(0)


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


def service_config(trace: Trace) -> tuple[ServiceConfig, Settings]:
    """The service as the bench's workers run it on ``trace`` (``bench.systems``): the
    trace's TTLs and limits, every other setting the product's default."""
    with tempfile.TemporaryDirectory() as work:
        settings = load_settings(quotacache_config(
            Path(work) / "quotacache.toml", "policy-sim", None, None, ttls=trace.ttls,
            limits=trace.limits))
    return settings.service(SERVICE), settings


def simulate(trace: Trace, *, latency: float = LATENCY, valuation: Valuation | None = None,
             rates: ReadRates | None = None, wait: float = WAIT,
             **valuation_args: object) -> Result:
    """Replay ``trace`` with the workers' settings (``service_config``); a read that
    finds its key stale or missing waits up to ``wait`` seconds for the refresh it asked
    for, as the bench's reads do (``?wait=2``). ``valuation_args`` replace fields of the
    settings' valuation (``Valuation``)."""
    config, settings = service_config(trace)
    warmup, max_in_flight = config.first_fetch_hold, config.max_in_flight
    inflight_timeout = settings.cache.inflight_timeout
    valuation = valuation or dataclasses.replace(Valuation.of(config, latency=latency),
                                                 **valuation_args)
    budget = SimBudget(trace, headroom=config.headroom, jitter=config.arrival_jitter,
                       latency=latency)
    rates = ReadRates() if rates is None else rates
    queue = FetchQueue()
    health = ServiceHealth()
    fetched: dict[str, float] = {}  # key -> fetched_at (completion)
    calling: set[str] = set()  # keys whose call is under way
    landing: list[tuple[float, int, str]] = []  # (completes at, seq, key)
    seq = itertools.count()
    result = Result()
    in_flight = 0
    priorities = {e: priority_of(trace, e) for e in trace.ttls}
    #: The rate each read-ordered key's waiting order carried, and when its mark expires
    #: (``tables.inflight``: a read after that claims the key again, with its rate then).
    claimed: dict[str, tuple[float, float]] = {}
    #: Reads waiting for their key's refresh: key -> [(gives up at, critical, has data)].
    waiting: dict[str, list[tuple[float, bool, bool]]] = {}

    def score(critical: bool, answered: bool, fresh: bool) -> None:
        result.answered += answered
        result.fresh += fresh
        result.critical_fresh += fresh and critical

    def give_up(key: str, now: float) -> None:
        """Readers whose wait ended before ``now`` are answered with what they found."""
        readers = waiting.get(key, [])
        for deadline, critical, had in readers:
            if deadline < now:
                score(critical, had, False)
        readers[:] = [r for r in readers if r[0] >= now]

    first_order_at: float | None = None

    def order(key: str, now: float, reason: str) -> None:
        nonlocal first_order_at
        first_order_at = now if first_order_at is None else first_order_at
        endpoint, symbol = key.split("/", 1)
        at = fetched.get(key)
        rate = rates.rate(key, now)
        if reason == "read":
            mark = claimed.get(key)  # a regrade keeps the mark's deadline
            claimed[key] = (rate, mark[1] if mark and mark[1] > now else now + inflight_timeout)
        queue.add(key, FetchOrder(
            service=SERVICE, endpoint=endpoint, symbol=symbol, priority=priorities[endpoint],
            reason=reason, requested_at=now, rate=rate,
            fresh_until=None if at is None else at + trace.ttls[endpoint]))

    def dispatch(now: float) -> None:
        nonlocal in_flight
        queue.drop_unread(now, dict(trace.ttls))
        first = now if first_order_at is None else first_order_at
        held = dataclasses.replace(valuation, hold_until=first + warmup)
        def readers(key: str) -> int:  # those a call made now can still answer
            return sum(1 for deadline, *_ in waiting.get(key, ()) if deadline >= now + latency)

        chosen = select_calls(queue, health, budget, now, service=SERVICE,
                              cooldown=config.breaker_cooldown,
                              free_slots=max_in_flight - in_flight, valuation=held,
                              waiting=readers)
        for queued in chosen.calls:
            queue.remove(queued.key)
            calling.add(queued.key)
            in_flight += 1
            result.calls.append((now, queued.key))
            heapq.heappush(landing, (now + latency, next(seq), queued.key))

    def land_until(now: float) -> None:
        nonlocal in_flight
        while landing and landing[0][0] <= now:
            at, _, key = heapq.heappop(landing)
            in_flight -= 1
            fetched[key] = at
            give_up(key, at)
            for _, critical, _ in waiting.pop(key, []):
                score(critical, True, True)
            calling.discard(key)
            claimed.pop(key, None)
            endpoint = key.split("/", 1)[0]
            if rates.worth_renewing(key, at, trace.ttls[endpoint]):
                order(key, at, "planned")
            dispatch(at)

    reads = iter(trace.reads)
    read = next(reads, None)
    now = 0.0
    next_tick = 0.0
    while True:  # until the reads, their calls and their waits are over (below)
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
            if at is not None and now - at <= ttl:
                score(critical, True, True)
            elif wait > 0:
                waiting.setdefault(key, []).append((now + wait, critical, at is not None))
            else:
                score(critical, at is not None, False)
            if (at is None or now - at > ttl) and key not in calling:
                # As admission does: a waiting key is ordered again once its mark has
                # expired, or when its rate has grown by REGRADE since its order was sent.
                if key not in claimed or claimed[key][1] <= now:
                    order(key, now, "read")
                elif key in queue and rates.rate(key, now) >= REGRADE * claimed[key][0]:
                    order(key, now, "read")
            dispatch(now)
            read = next(reads, None)
        if now >= next_tick:
            dispatch(now)
            next_tick = now + TICK
            if read is None and not landing and not any(
                    deadline >= now for readers in waiting.values() for deadline, *_ in readers):
                break
    for key in list(waiting):
        give_up(key, float("inf"))
    return result


#: A run must reach these fractions of the optimum (fresh, answered, critical fresh).
TARGETS = {"fresh": 0.95, "answered": 0.97, "critical": 0.98}


def optimum(trace: Trace, seed: int) -> dict[str, int]:
    """The trace's optimum of each objective: the best schedule the solver found, from
    bench/results/optima.json (``bench.optimum.cached_optima``). When a solve stopped
    early, the true optimum lies between it and its bound (``optima_with_bounds``)."""
    return optima_with_bounds(trace, seed)[0]


def optima_with_bounds(trace: Trace, seed: int) -> tuple[dict[str, int], dict[str, int]]:
    """Per objective, the best schedule found and what no schedule can beat (the same
    once proven), from one read of the cache."""
    from bench.optimum import cached_optima  # scipy: only when an optimum is needed

    solved = cached_optima(trace, seed)
    return ({objective: best["value"] for objective, best in solved.items()},
            {objective: best["bound"] for objective, best in solved.items()})


def violations(trace: Trace, result: Result, latency: float = LATENCY) -> list[str]:
    """Every window of S seconds in which more than N calls of a scope arrive upstream."""
    scopes: dict[str, list[float]] = {}
    for at, key in result.calls:
        for scope in ("service", key.split("/", 1)[0]):
            scopes.setdefault(scope, []).append(at + latency)
    found = []
    for scope, times in scopes.items():
        times.sort()
        for limit in trace.limits.service if scope == "service" else trace.limits.endpoint:
            for i, first in enumerate(times):
                inside = bisect_left(times, first + limit.seconds) - i
                if inside > limit.calls:
                    found.append(f"{scope}: {inside} calls in [{first:.2f}, "
                                 f"{first + limit.seconds:.2f}) over {limit}")
                    break
    return found


def report(trace: Trace, seed: int, result: Result) -> tuple[str, bool]:
    """One line of ratios to the optimum; misses flagged loudly."""
    best, bounds = optima_with_bounds(trace, seed)
    ratios = {"fresh": result.fresh / best["fresh"],
              "answered": result.answered / best["answered"],
              "critical": result.critical_fresh / best["critical"] if best["critical"] else 1.0}
    bad = violations(trace, result)
    missed = [f"{k} {ratios[k]:.3f} < {TARGETS[k]}" for k in TARGETS if ratios[k] < TARGETS[k]]
    if bad:
        missed.append(f"{len(bad)} LIMIT VIOLATIONS: {bad[0]}")
    line = (f"{trace.name:9} seed {seed:3}  fresh {ratios['fresh']:.3f}  answered "
            f"{ratios['answered']:.3f}  critical {ratios['critical']:.3f}  "
            f"({result.fresh}/{best['fresh']}, {result.answered}/{best['answered']}, "
            f"{result.critical_fresh}/{best['critical']}; {len(result.calls)} calls)")
    if missed:
        line += "\n    !!! MISSED: " + "; ".join(missed)
    reached = {"fresh": result.fresh, "answered": result.answered,
               "critical": result.critical_fresh}
    unproven = {k: v for k, v in bounds.items() if v > best[k]}
    if unproven:  # the ratios above flatter the policy by up to the solver's gap
        line += "\n    optimum not proven (solver's time limit): " + ", ".join(
            f"{k} at most {v} ({reached[k] / v:.3f} of that)" for k, v in unproven.items())
    return line, not missed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trace", default="all",
                        help="a built-in trace, a file, or 'all' (the four built-in ones)")
    parser.add_argument("--seed", type=int, nargs="+", default=[7])
    known = parser.add_mutually_exclusive_group()
    known.add_argument("--known-rates", action="store_true",
                       help="give the policy every key's true read rate (KnownRates)")
    known.add_argument("--known-process", action="store_true",
                       help="give the policy the process that drew the reads (KnownProcess)")
    known.add_argument("--known-reads", action="store_true",
                       help="give the policy every key's reads in its TTL ahead, a minute at "
                            "most (KnownReads)")
    known.add_argument("--known-values", action="store_true",
                       help="value every call by the reads to come it makes fresh, and a "
                            "first fetch also by the later reads it answers (KnownValues)")
    parser.add_argument("--answered-weight", type=float, default=1.0,
                        help="with --known-values: what a read answered stale is worth "
                             "against a fresh one (default 1)")
    parser.add_argument("--duration", type=float,
                        help="built-in traces' length in seconds (default 90; a new length's "
                             "optima are solved once, up to a minute each, and cached)")
    parser.add_argument("--answered-bonus", type=float,
                        help="seconds of reads a first fetch is worth beyond its TTL (the "
                             "service setting answered_bonus; default: the setting's)")
    args = parser.parse_args()
    if args.known_values and args.answered_bonus:
        parser.error("--answered-bonus is the estimated policy's: --known-values weighs "
                     "answered reads with --answered-weight")
    if not args.known_values and args.answered_weight != 1.0:
        parser.error("--answered-weight needs --known-values")
    from bench.trace import BUILT_IN

    names = list(BUILT_IN) if args.trace == "all" else [args.trace]
    failed = 0
    for seed in args.seed:
        for name in names:
            trace = named(name, seed=seed, duration=args.duration)
            try:
                rates = (KnownRates(trace) if args.known_rates
                         else KnownProcess(trace) if args.known_process
                         else KnownReads(trace) if args.known_reads or args.known_values
                         else None)
            except ValueError as refused:
                parser.error(str(refused))
            if args.known_values:
                result = simulate(trace, rates=rates, valuation=KnownValues.of(
                    trace, LATENCY, answered_weight=args.answered_weight))
            else:
                bonus = ({} if args.answered_bonus is None
                         else {"answered_bonus": args.answered_bonus})
                result = simulate(trace, rates=rates, **bonus)
            line, ok = report(trace, seed, result)
            failed += not ok
            print(line, flush=True)
    conclude(failed)


def conclude(failed: int) -> None:
    """The last line of a run of runs; exit 1 when any missed a target."""
    if failed:
        print(f"!!! {failed} run(s) MISSED a target")
        raise SystemExit(1)
    print("every run reached every target")


if __name__ == "__main__":
    main()
