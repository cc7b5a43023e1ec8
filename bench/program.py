"""The parts of an integer program over 1 s call slots that the optimum and the planner
share: a sparse constraint matrix built row by row, and the rows that keep every limit of
a trace in every window of its slots."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable

import numpy as np
from scipy.optimize import LinearConstraint
from scipy.sparse import csr_array

from bench.trace import Limit, Trace

EPS = 1e-9

Call = tuple[int, str]  # (slot, key)


def window_slots(limit: Limit) -> int:
    """Integer slots that fit in one window of the limit (half-open, S seconds)."""
    return math.ceil(limit.seconds - EPS)


def needed(limits: Iterable[Limit]) -> list[Limit]:
    """The limits no other one implies: N/S goes if ceil(S/s) windows of n/s hold it."""
    unique = sorted(set(limits))
    return [lim for lim in unique if not any(
        other != lim and math.ceil(window_slots(lim) / window_slots(other)) * other.calls
        <= lim.calls for other in unique)]


class Rows:
    """A sparse constraint matrix, built row by row."""

    def __init__(self) -> None:
        self.columns: list[list[int]] = []
        self.values: list[list[float]] = []
        self.lower: list[float] = []
        self.upper: list[float] = []

    def add(self, columns: list[int], values: list[float], lower: float = -np.inf,
            upper: float = np.inf) -> None:
        self.columns.append(columns)
        self.values.append(values)
        self.lower.append(lower)
        self.upper.append(upper)

    def constraint(self, width: int) -> LinearConstraint:
        starts = np.concatenate([[0], np.cumsum([len(c) for c in self.columns])])
        matrix = csr_array((np.concatenate(self.values), np.concatenate(self.columns), starts),
                           shape=(len(self.columns), width))
        return LinearConstraint(matrix, np.array(self.lower), np.array(self.upper))


def limit_rows(trace: Trace, columns: list[Call], rows: Rows, first: int
                ) -> dict[tuple[str, int], int]:
    """Rows for every limit window that could overflow, over per-slot count variables
    (columns from ``first`` on, one per scope and slot, returned): windows sum the counts
    of their scope, not every call variable, for far fewer nonzeros (a 60 s window of
    300 keys would otherwise list 18,000 variables); each count equals its slot's calls."""
    counts: dict[tuple[str, int], int] = {}
    for scope, limit, window in windows(trace, columns):
        count_columns = [counts.setdefault((scope, slot), first + len(counts))
                         for slot in window]
        rows.add(count_columns, [1.0] * len(window), upper=limit)
    members: dict[tuple[str, int], list[int]] = defaultdict(list)
    for i, (slot, key) in enumerate(columns):
        for scope in ("service", key.split("/")[0]):
            if (scope, slot) in counts:
                members[scope, slot].append(i)
    for scope_slot, column in counts.items():
        calls_there = members[scope_slot]
        rows.add([column, *calls_there], [1.0] + [-1.0] * len(calls_there), 0.0, 0.0)
    return counts


def windows(trace: Trace, columns: list[Call]) -> Iterable[tuple[str, int, list[int]]]:
    """(scope, N, slots) of every window of a limit N/S that could hold more than N calls,
    leaving out windows another one of the same limit contains."""
    scopes: dict[str, list[int]] = defaultdict(list)
    for slot, key in columns:
        scopes["service"].append(slot)
        scopes[key.split("/")[0]].append(slot)
    for scope, slots in scopes.items():
        slot_of = np.array(sorted(slots))
        for limit in needed(trace.limits.service if scope == "service"
                            else trace.limits.endpoint):
            m = window_slots(limit)
            starts = np.arange(slot_of[0], max(slot_of[0], slot_of[-1] - m + 1) + 1)
            first = np.searchsorted(slot_of, starts, "left").tolist()
            last = np.searchsorted(slot_of, starts + m, "left").tolist()
            kept_last = -1
            for i, (a, b) in enumerate(zip(first, last, strict=True)):
                inside_next = i + 1 < len(first) and first[i + 1] == a
                if b - a <= limit.calls or inside_next or kept_last == b:
                    continue
                kept_last = b
                yield scope, limit.calls, sorted(set(slot_of[a:b].tolist()))
