"""The planner reference: what it is told of the reads to come, and the limits it keeps."""

from __future__ import annotations

import dataclasses
import math

import pytest

from bench import planner, trace
from bench.optimum import violations

from .test_optimum import tiny


def test_told_the_reads_it_waits_for_the_call_worth_more():
    # One call in the whole trace. B's first read could be answered at once, but calling
    # B at 23 keeps its four later reads fresh; A, first read at 20, is worth less.
    reads = tiny([(1.0, "ls_ratio/B")] + [(at, "ls_ratio/B") for at in (25.0, 26.0, 27.0, 28.0)]
                 + [(at, "xtrades/A") for at in (20.0, 21.0, 22.0)], ("1/30",))
    done = planner.replay(reads, "reads")
    assert [key for _, key in done.result.calls] == ["ls_ratio/B"]
    assert 21 <= done.result.calls[0][0] <= 23
    assert (done.result.fresh, done.result.answered) == (4, 4)


@pytest.mark.parametrize("knows", planner.KNOWS)
def test_a_plan_calls_only_keys_already_read_and_keeps_every_limit(knows):
    short = trace.named("tight", 7, duration=20.0)
    done = planner.replay(short, knows)
    first = {}
    for read in short.reads:
        first.setdefault(read.key, read.at)
    calls = [(int(at), key) for at, key in done.result.calls]
    assert calls and done.result.fresh > 0
    assert all(slot >= math.ceil(first[key]) for slot, key in calls)
    assert violations(short, calls) == []
    assert done.solves >= len({math.ceil(at) for at in first.values()})


def test_knowing_the_process_needs_a_built_in_trace():
    reads = tiny([(1.0, "ls_ratio/B")])
    with pytest.raises(ValueError, match="--knows process needs a built-in one"):
        planner.replay(reads, "process")


@pytest.mark.parametrize("knows", planner.KNOWS)
def test_only_the_reads_knowledge_sees_the_draw_to_come(knows):
    # The same trace with its reads after 10 s replaced by others: a planner told the
    # process or the rates plans the same first 10 s; one told the reads does not.
    full = trace.named("tight", 7, duration=20.0)
    other = trace.named("tight", 8, duration=20.0)
    swapped = dataclasses.replace(full, reads=[r for r in full.reads if r.at <= 10.0]
                                  + [r for r in other.reads if r.at > 10.0])
    def early(t):
        return [call for call in planner.replay(t, knows).result.calls if call[0] <= 10.0]

    assert (early(full) == early(swapped)) is (knows != "reads")
