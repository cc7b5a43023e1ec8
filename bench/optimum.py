"""The best any cache could do on a trace: an integer program over 1 s call slots.

Systems are scored against it (fresh / optimum, answered / optimum), so a figure means
"how close to perfect foresight", not "how close to a guess". A call sent in slot t
completes at t + latency; a read is answered if a call for its key completed before it,
and fresh if one completed at most a TTL before it. Every limit N/S of the trace holds in
every window of S consecutive slots, for the service and for each endpoint.

Age counts from completion, as the harness sees it (the simulator stamps its data after
its latency). Counting it from the send instead gives BUDGET-NOTES' 88.5 % fresh on zipf
seed 7; from completion, 88.7 %. Slots are whole seconds, so a real schedule (continuous
times, 0.2-0.5 s latency, the harness' 0.5 s slack) may beat the optimum slightly.

The model is kept small: one binary per (key, slot) that could serve a read, reads
aggregated per (key, slots that serve them) into one continuous variable each, windows
summing per-slot counts rather than every call variable, and windows that cannot
overflow or that another window or limit implies left out. HiGHS solves it; when it stops
at the time limit or gap, its dual bound is reported as the bound.
"""

from __future__ import annotations

import bisect
import json
import math
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import Bounds, milp

from bench.program import EPS, Call, Rows, limit_rows, window_slots
from bench.trace import BUILT_IN, DEFAULT_DURATION, LATENCY, Trace

#: Optima already solved, by "<trace>/seed<N>" (a built-in trace of another length than
#: the default: "<trace>/seed<N>/<seconds>s").
CACHE = Path(__file__).parent / "results" / "optima.json"
OBJECTIVES = ("fresh", "answered", "critical")
#: A joint optimum's status when no schedule meets its floors.
NO_SCHEDULE = "no schedule meets the floors"


@dataclass(frozen=True)
class Score:
    fresh: int
    answered: int
    critical_fresh: int


@dataclass(frozen=True)
class Optimum:
    """The best schedule found for one objective, and what no schedule can beat."""

    objective: str  # fresh, answered or critical (fresh reads of critical endpoints)
    value: int  # reads the objective counts, in the schedule found
    bound: int  # no schedule counts more (HiGHS' dual bound); == value when proved optimal
    reads: int  # reads the objective is over (all reads, or the critical ones)
    score: Score  # the schedule's fresh, answered and critical fresh reads
    calls: list[Call]
    seconds: float
    status: str

    @property
    def gap(self) -> float:
        return (self.bound - self.value) / self.bound if self.bound else 0.0

    @property
    def optimal(self) -> bool:
        return self.bound == self.value and self.status != NO_SCHEDULE

    def as_dict(self) -> dict[str, object]:
        return {"objective": self.objective, "value": self.value, "bound": self.bound,
                "reads": self.reads, "fresh": self.score.fresh,
                "answered": self.score.answered, "critical_fresh": self.score.critical_fresh,
                "calls": len(self.calls), "gap": round(self.gap, 5),
                "seconds": round(self.seconds, 2), "status": self.status}


def served_slots(at: float, ttl: float, latency: float, wait: float = 0.0
                 ) -> tuple[int, int]:
    """First and last slot whose call completes at most ``ttl`` before ``at`` (or at
    most ``wait`` after it: a reader that waits for the refresh gets it fresh)."""
    return (max(0, math.ceil(at - ttl - latency - EPS)),
            math.floor(at + wait - latency + EPS))


def score(trace: Trace, calls: Iterable[Call], latency: float = LATENCY, wait: float = 0.0
          ) -> Score:
    """Fresh, answered and critical fresh reads of a schedule (limits not checked)."""
    done: dict[str, list[float]] = defaultdict(list)
    for slot, key in calls:
        done[key].append(slot + latency)
    for times in done.values():
        times.sort()
    fresh = answered = critical = 0
    for read in trace.reads:
        times = done.get(read.key, [])
        last = bisect.bisect_right(times, read.at + wait + EPS)
        if last:
            answered += 1
            if read.at - times[last - 1] <= trace.ttl(read) + EPS:
                fresh += 1
                critical += trace.critical(read)
    return Score(fresh, answered, critical)


def violations(trace: Trace, calls: Iterable[Call]) -> list[str]:
    """Every window of a limit that a schedule overflows (empty when it respects them)."""
    scopes: dict[str, list[int]] = defaultdict(list)
    for slot, key in calls:
        scopes["service"].append(slot)
        scopes[key.split("/")[0]].append(slot)
    found = []
    for scope, slots in scopes.items():
        slots.sort()
        for limit in trace.limits.service if scope == "service" else trace.limits.endpoint:
            m = window_slots(limit)
            for i, first in enumerate(slots):
                inside = bisect.bisect_left(slots, first + m) - i
                if inside > limit.calls:
                    found.append(f"{scope}: {inside} calls in slots {first}-{first + m - 1} "
                                 f"over {limit}")
    return found


def solve(trace: Trace, objective: str = "fresh", latency: float = LATENCY,
          time_limit: float = 60.0, mip_rel_gap: float = 1e-3,
          after_first_read: bool = False, wait: float = 0.0) -> Optimum:
    """The schedule of calls that maximises ``objective`` under every limit window.

    ``after_first_read`` calls a key only from the first slot after its first read: the
    best a cache could do that fetches only keys already asked for (knowing all the
    rest). ``wait`` lets every read wait that long for a call, as the bench's reads do
    (``?wait=2``); the optima systems are scored against have none."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, not {objective!r}")
    began = time.perf_counter()
    # Terms: (key, first slot, last slot) -> reads a call in those slots would count.
    terms: dict[tuple[str, int, int], int] = defaultdict(int)
    counted = 0
    first_slot: dict[str, int] = {}
    for read in trace.reads:
        first_slot.setdefault(read.key, math.ceil(read.at - EPS) if after_first_read else 0)
        if objective == "critical" and not trace.critical(read):
            continue
        counted += 1
        lo, hi = served_slots(read.at, trace.ttl(read), latency, wait)
        if objective == "answered":
            lo = 0
        lo = max(lo, first_slot[read.key])
        if lo <= hi:
            terms[read.key, lo, hi] += 1
    slots: dict[str, set[int]] = defaultdict(set)
    for key, lo, hi in terms:
        slots[key].update(range(lo, hi + 1))
    columns = [(slot, key) for key in sorted(slots) for slot in sorted(slots[key])]
    index = {column: i for i, column in enumerate(columns)}
    n_x, n_terms = len(columns), len(terms)

    rows = Rows()
    for t, (key, lo, hi) in enumerate(terms):  # a term counts only if a call serves it
        served = [index[s, key] for s in range(lo, hi + 1)]
        rows.add([n_x + t, *served], [1.0] + [-1.0] * len(served), upper=0.0)
    if objective == "answered":  # only a key's first call answers anything: keep one
        for key in slots:
            rows.add([index[s, key] for s in slots[key]], [1.0] * len(slots[key]), upper=1.0)
    counts = limit_rows(trace, columns, rows, n_x + n_terms)

    width = n_x + n_terms + len(counts)
    weights = np.zeros(width)
    weights[n_x:n_x + n_terms] = -np.fromiter(terms.values(), float, n_terms)
    result = None
    if rows.values:
        upper_bounds = np.r_[np.ones(n_x + n_terms), np.full(len(counts), np.inf)]
        result = milp(weights, integrality=np.r_[np.ones(n_x), np.zeros(width - n_x)],
                      bounds=Bounds(0, upper_bounds), constraints=rows.constraint(width),
                      options={"time_limit": time_limit, "mip_rel_gap": mip_rel_gap})
    calls = ([columns[i] for i in range(n_x) if result.x[i] > 0.5]
             if result is not None and result.x is not None else [])
    calls = _prune(trace, calls, objective, latency, wait)
    found = score(trace, calls, latency, wait)
    value = {"fresh": found.fresh, "answered": found.answered,
             "critical": found.critical_fresh}[objective]
    if result is None:
        bound, status = 0, "nothing to call"
    else:
        dual = getattr(result, "mip_dual_bound", None)
        # The objective is integral: a bound of 2362.5 means 2362 (tolerance for rounding).
        bound = math.floor(-dual + 1e-3) if dual is not None and math.isfinite(dual) \
            else counted
        status = ("optimal" if bound == value else "gap reached" if result.status == 0
                  else "time limit" if result.status == 1 else result.message)
        if bound < value:  # the model and the scoring disagree: say so, never hide it
            status, bound = f"inconsistent: bound {bound} below the schedule's {value}", value
    return Optimum(objective, value, bound, counted, found, sorted(calls),
                   time.perf_counter() - began, status)


def solve_joint(trace: Trace, objective: str, floor_objective: str, floor: float,
                latency: float = LATENCY, time_limit: float = 120.0,
                after_first_read: bool = False, wait: float = 0.0,
                critical_floor: float = 0.0) -> Optimum:
    """The most ``objective`` reads (fresh or answered) of the schedules that reach at
    least ``floor`` reads of ``floor_objective`` and ``critical_floor`` fresh reads of
    critical endpoints: how much of one optimum is left when the others must be nearly
    met (issue 14's targets ask for all three at once). The model is ``solve``'s with
    every kind of read, sharing the calls and the limit windows. When no schedule meets
    the floors, the value and bound are 0 and the status says so."""
    kinds = ("fresh", "answered")
    if {objective, floor_objective} != set(kinds):
        raise ValueError("a joint optimum weighs fresh against answered reads")
    began = time.perf_counter()
    terms: dict[str, dict[tuple[str, int, int], int]] = {
        k: defaultdict(int) for k in (*kinds, "critical")}
    first_slot: dict[str, int] = {}
    for read in trace.reads:
        first = first_slot.setdefault(
            read.key, math.ceil(read.at - EPS) if after_first_read else 0)
        lo, hi = served_slots(read.at, trace.ttl(read), latency, wait)
        if max(lo, first) <= hi:
            terms["fresh"][read.key, max(lo, first), hi] += 1
            if critical_floor > 0 and trace.critical(read):
                terms["critical"][read.key, max(lo, first), hi] += 1
        if first <= hi:
            terms["answered"][read.key, first, hi] += 1
    slots: dict[str, set[int]] = defaultdict(set)
    for kind in kinds:
        for key, lo, hi in terms[kind]:
            slots[key].update(range(lo, hi + 1))
    columns = [(slot, key) for key in sorted(slots) for slot in sorted(slots[key])]
    index = {column: i for i, column in enumerate(columns)}
    rows = Rows()
    start, n_vars = {}, len(columns)
    for kind, kind_terms in terms.items():  # a term counts only if a call serves it
        start[kind] = n_vars
        for t, (key, lo, hi) in enumerate(kind_terms):
            served = [index[s, key] for s in range(lo, hi + 1)]
            rows.add([n_vars + t, *served], [1.0] + [-1.0] * len(served), upper=0.0)
        n_vars += len(kind_terms)
    counts = limit_rows(trace, columns, rows, n_vars)
    for kind, at_least in ((floor_objective, floor), ("critical", critical_floor)):
        if at_least > 0 and not terms[kind]:  # no read a call could count: out of reach
            return Optimum(objective, 0, 0, len(trace.reads), Score(0, 0, 0), [],
                           time.perf_counter() - began, NO_SCHEDULE)
        if terms[kind]:
            floor_terms = list(terms[kind].values())
            rows.add(list(range(start[kind], start[kind] + len(floor_terms))),
                     [float(v) for v in floor_terms], lower=at_least)
    if not rows.values:  # no read any call could count: no call is the best schedule
        return Optimum(objective, 0, 0, len(trace.reads), Score(0, 0, 0), [],
                       time.perf_counter() - began, "optimal")
    width = n_vars + len(counts)
    weights = np.zeros(width)
    main_terms = list(terms[objective].values())
    weights[start[objective]:start[objective] + len(main_terms)] = -np.array(main_terms, float)
    result = milp(weights, integrality=np.r_[np.ones(len(columns)), np.zeros(width - len(columns))],
                  bounds=Bounds(0, np.r_[np.ones(n_vars), np.full(len(counts), np.inf)]),
                  constraints=rows.constraint(width),
                  options={"time_limit": time_limit, "mip_rel_gap": 1e-3})
    calls = ([columns[i] for i in range(len(columns)) if result.x[i] > 0.5]
             if result.x is not None else [])
    found = score(trace, calls, latency, wait)
    value = found.fresh if objective == "fresh" else found.answered
    if result.status == 2:  # infeasible: no schedule reaches the floors
        return Optimum(objective, 0, 0, len(trace.reads), found, [],
                       time.perf_counter() - began, NO_SCHEDULE)
    dual = getattr(result, "mip_dual_bound", None)
    bound = (math.floor(-dual + 1e-3) if dual is not None and math.isfinite(dual)
             else len(trace.reads))
    status = ("optimal" if bound <= value else "gap reached" if result.status == 0
              else "time limit" if result.status == 1 else result.message)
    return Optimum(objective, value, max(bound, value), len(trace.reads), found, sorted(calls),
                   time.perf_counter() - began, status)


def _prune(trace: Trace, calls: list[Call], objective: str, latency: float,
           wait: float = 0.0) -> list[Call]:
    """Drop calls that buy nothing (the program does not charge for them), key by key."""
    by_key: dict[str, list[Call]] = defaultdict(list)
    for call in calls:
        by_key[call[1]].append(call)
    kept: list[Call] = []
    for key, own in by_key.items():
        sub = Trace([r for r in trace.reads if r.key == key], trace.duration, None,
                    trace.name, trace.limits, trace.ttls)

        def rank(schedule: list[Call], sub: Trace = sub) -> tuple[int, int, int]:
            s = score(sub, schedule, latency, wait)
            main = {"fresh": s.fresh, "answered": s.answered,
                    "critical": s.critical_fresh}[objective]
            return main, s.fresh, s.answered

        best = rank(own)
        for call in sorted(own, reverse=True):
            trial = [c for c in own if c != call]
            if rank(trial) >= best:
                own = trial
        kept += own
    return kept


def optima(trace: Trace, latency: float = LATENCY, time_limit: float = 60.0,
           mip_rel_gap: float = 1e-3) -> dict[str, Optimum]:
    """The three optima a run is scored against."""
    return {objective: solve(trace, objective, latency, time_limit, mip_rel_gap)
            for objective in OBJECTIVES}


def cached_optima(trace: Trace, seed: int, path: Path = CACHE) -> dict[str, dict]:
    """``optima(trace)`` as dicts, solved once per built-in trace and seed and kept in
    ``path`` (bench/results/optima.json): a solve takes seconds to a minute."""
    cache = json.loads(path.read_text()) if path.exists() else {}
    name = f"{trace.name}/seed{seed}"
    if trace.name in BUILT_IN and trace.duration != DEFAULT_DURATION:
        name += f"/{trace.duration:g}s"  # another length is another trace
    if name not in cache:
        found = optima(trace)
        cache = json.loads(path.read_text()) if path.exists() else {}
        cache[name] = {objective: best.as_dict() for objective, best in found.items()}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cache, indent=1, sort_keys=True) + "\n")
    return cache[name]
