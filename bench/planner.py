"""A planner in place of the greedy dispatch, in the optimum's own model: what the
scheduling itself is worth, told more or less of the reads to come.

Calls go in 1 s slots and land ``LATENCY`` later; a read waits ``WAIT`` for a call, as
the bench's reads do; a key can be called only from the slot after its first read, as
for any cache. Whenever a key is read for the first time, and every ``replan`` seconds,
the planner solves the integer program over every slot to come (``bench.optimum``'s
model, with the calls already sent fixed and so the limits' windows as they are), for
the reads of the keys seen so far, and sends the plan's calls of the slot. Those reads
are known exactly (``reads``: foresight of the seen keys' draw), in expectation from the
process that drew them (``process``: what no estimate can beat), or at the read rates
the workers estimate (``rates``), each at most ``horizon`` seconds ahead.

It is a reference point for the dispatch (``bench.policy_sim``) with the same knowledge,
not a policy the workers could run: it solves an integer program at every step.
``python -m bench.planner --trace tight --knows process``.
"""

from __future__ import annotations

import argparse
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, milp

from bench.optimum import score, served_slots
from bench.policy_sim import Result, conclude, report
from bench.program import Call, Rows, limit_rows
from bench.systems import WAIT
from bench.trace import BUILT_IN, LATENCY, Read, Trace, named
from quotacache.policy.demand import ReadRates

KNOWS = ("reads", "process", "rates")
#: Expected reads are counted in steps of this many seconds (fewer terms to solve).
STEP = 2.0


@dataclass(frozen=True)
class Weights:
    """What the plan maximises: fresh reads, plus these many per answered read and per
    fresh read of a critical endpoint."""

    answered: float = 1.0
    critical: float = 0.0


def plan(trace: Trace, known: Iterable[tuple[Read, float]], sent: list[Call], slot: int,
         weights: Weights, time_limit: float) -> list[Call]:
    """The calls from ``slot`` on that maximise the weighted reads of ``known`` ((read,
    expected count) pairs), given the calls already ``sent``: only keys in ``known``
    are called, so only keys already read."""
    terms: dict[tuple[str, int, int], float] = defaultdict(float)
    for read, count in known:
        lo, hi = served_slots(read.at, trace.ttl(read), LATENCY, WAIT)
        if hi < slot:
            continue  # settled by the calls already sent
        fresh = 1.0 + (weights.critical if trace.critical(read) else 0.0)
        terms[read.key, lo, hi] += fresh * count
        terms[read.key, 0, hi] += weights.answered * count
    columns = set(sent)
    for key, lo, hi in terms:
        columns.update((s, key) for s in range(max(lo, slot), hi + 1))
    ordered = sorted(columns)
    index = {column: i for i, column in enumerate(ordered)}
    by_key: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for (s, key), i in index.items():
        by_key[key].append((s, i))
    rows = Rows()
    n_x = len(ordered)
    values: list[float] = []
    for (key, lo, hi), value in terms.items():  # a term counts only if a call serves it
        served = [i for s, i in by_key[key] if lo <= s <= hi]
        if served:
            rows.add([n_x + len(values), *served], [1.0] + [-1.0] * len(served), upper=0.0)
            values.append(value)
    if not values:
        return []
    n_vars = n_x + len(values)
    counts = limit_rows(trace, ordered, rows, n_vars)
    width = n_vars + len(counts)
    cost = np.zeros(width)
    cost[n_x:n_vars] = -np.array(values)
    for (s, _), i in index.items():  # of equal plans, the one that calls sooner
        cost[i] = 1e-4 * (s - slot)
    lower = np.zeros(width)
    lower[[index[call] for call in sent]] = 1.0
    result = milp(cost, integrality=np.r_[np.ones(n_x), np.zeros(width - n_x)],
                  bounds=Bounds(lower, np.r_[np.ones(n_vars), np.full(len(counts), np.inf)]),
                  constraints=rows.constraint(width),
                  options={"time_limit": time_limit, "mip_rel_gap": 1e-3})
    if result.x is None:
        raise RuntimeError(f"the planner found no plan at slot {slot}: {result.message}")
    done = set(sent)
    return [ordered[i] for i in range(n_x) if result.x[i] > 0.5 and ordered[i] not in done]


def expected_reads(trace: Trace, keys: Iterable[str], slot: int, expected: Callable[
        [str, float, float], float], horizon: float) -> list[tuple[Read, float]]:
    """The seen keys' reads to come as (read in the middle of a step, expected count)."""
    end = min(trace.duration, slot + horizon)
    found = []
    for key in keys:
        endpoint, symbol = key.split("/", 1)
        start = float(slot)
        while start < end:
            count = expected(key, start, min(start + STEP, end))
            if count > 1e-6:
                found.append((Read(start + STEP / 2, endpoint, symbol), count))
            start += STEP
    return found


def reads_to_come(trace: Trace, knows: str, seen: frozenset[str], slot: int, fed: int,
                  rates: ReadRates, horizon: float) -> list[tuple[Read, float]]:
    """The seen keys' reads after ``slot``, as far as ``knows`` tells them."""
    if knows == "reads":
        return [(r, 1.0) for r in trace.reads[fed:]
                if r.key in seen and r.at <= slot + horizon]
    if knows == "process":
        assert trace.process is not None
        return expected_reads(trace, seen, slot, trace.process.expected, horizon)
    now = {key: rates.rate(key, slot) for key in seen}
    return expected_reads(trace, seen, slot,
                          lambda key, start, end: now[key] * (end - start), horizon)


@dataclass
class Replay:
    result: Result
    solves: int


def replay(trace: Trace, knows: str = "process", weights: Weights = Weights(),
           replan: int = 5, horizon: float = math.inf, time_limit: float = 10.0) -> Replay:
    """Plan and send calls slot by slot over ``trace`` (see the module)."""
    if replan < 1:
        raise ValueError(f"replan must be 1 or more seconds, not {replan}")
    if knows not in KNOWS:
        raise ValueError(f"knows must be one of {KNOWS}, not {knows!r}")
    if knows == "process" and trace.process is None:
        raise ValueError(f"trace {trace.name!r} was not drawn by a known process "
                         "(a file trace): --knows process needs a built-in one")
    first_at: dict[str, float] = {}
    for read in trace.reads:
        first_at.setdefault(read.key, read.at)
    rates, fed = ReadRates(), 0
    sent: list[Call] = []
    planned: list[Call] = []
    seen_before: frozenset[str] = frozenset()
    solves = 0
    for slot in range(math.ceil(trace.duration + WAIT) + 1):
        while fed < len(trace.reads) and trace.reads[fed].at <= slot:
            rates.read(trace.reads[fed].key, trace.reads[fed].at)
            fed += 1
        seen = frozenset(key for key, at in first_at.items() if at <= slot)
        if seen != seen_before or slot % replan == 0:
            seen_before = seen
            known = [(r, 1.0) for r in trace.reads[:fed]]  # all of keys seen by now
            known += reads_to_come(trace, knows, seen, slot, fed, rates, horizon)
            planned = plan(trace, known, sent, slot, weights, time_limit)
            solves += 1
        sent += [(s, key) for s, key in planned if s == slot]
    return Replay(scored(trace, sent), solves)


def scored(trace: Trace, calls: list[Call]) -> Result:
    """``calls`` scored as the simulation scores its runs (reads waiting ``WAIT``)."""
    found = score(trace, calls, LATENCY, WAIT)
    return Result(reads=len(trace.reads), fresh=found.fresh, answered=found.answered,
                  critical_reads=sum(map(trace.critical, trace.reads)),
                  critical_fresh=found.critical_fresh,
                  calls=[(float(s), key) for s, key in sorted(calls)])


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trace", default="all",
                        help="a built-in trace, a file, or 'all' (the four built-in ones)")
    parser.add_argument("--seed", type=int, nargs="+", default=[7])
    parser.add_argument("--knows", choices=KNOWS, default="process",
                        help="the reads to come: exactly, in expectation from the process, "
                             "or at the workers' estimated rates (default: process)")
    parser.add_argument("--replan", type=positive_int, default=5,
                        help="seconds between plans when no new key is read (default 5)")
    parser.add_argument("--horizon", type=float, default=math.inf,
                        help="seconds of reads ahead the plan counts (default: to the end)")
    parser.add_argument("--answered-weight", type=float, default=1.0,
                        help="what an answered read is worth against a fresh one (default 1)")
    parser.add_argument("--time-limit", type=float, default=10.0,
                        help="seconds each plan may take before the best found is used "
                             "(default 10)")
    args = parser.parse_args()
    names = list(BUILT_IN) if args.trace == "all" else [args.trace]
    failed = 0
    for seed in args.seed:
        for name in names:
            trace = named(name, seed=seed)
            began = time.perf_counter()
            try:
                done = replay(trace, args.knows, Weights(answered=args.answered_weight),
                              args.replan, args.horizon, args.time_limit)
            except ValueError as refused:
                parser.error(str(refused))
            line, ok = report(trace, seed, done.result)
            failed += not ok
            print(f"{line}\n    {done.solves} plans in {time.perf_counter() - began:.0f} s",
                  flush=True)
    conclude(failed)


if __name__ == "__main__":
    main()
