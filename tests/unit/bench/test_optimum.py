"""The optimum on traces small enough to know the answer by hand."""

from __future__ import annotations

import json

from bench import trace
from bench.optimum import score, solve, solve_joint, violations
from bench.program import needed
from bench.trace import Limit, Limits, Read, Trace


def tiny(reads: list[tuple[float, str]], service: tuple[str, ...] = ("1/10",),
         endpoint: tuple[str, ...] = (), ttl: float = 5.0) -> Trace:
    """Reads (at, key) with a TTL of ``ttl`` on every endpoint."""
    return Trace([Read(at, *key.split("/")) for at, key in sorted(reads)], 30.0, None, "tiny",
                 Limits(tuple(map(Limit.parse, service)), tuple(map(Limit.parse, endpoint))),
                 {name: ttl for name in trace.TTLS})


def test_one_key_one_call_per_window():
    # Slot 0 serves the read at 1; slots 4-7 serve both later reads; calls 10 slots apart.
    reads = tiny([(1.0, "ls_ratio/BTC"), (8.0, "ls_ratio/BTC"), (9.0, "ls_ratio/BTC")])
    fresh = solve(reads, "fresh")
    assert (fresh.value, fresh.bound, fresh.optimal) == (2, 2, True)
    assert len(fresh.calls) == 1 and 4 <= fresh.calls[0][0] <= 7
    answered = solve(reads, "answered")
    assert (answered.value, answered.calls) == (3, [(0, "ls_ratio/BTC")])


def test_latency_decides_what_can_be_answered():
    reads = tiny([(0.2, "ls_ratio/BTC"), (0.4, "ls_ratio/BTC"), (7.0, "ls_ratio/BTC")])
    assert solve(reads, "answered").value == 2  # a call sent at 0 completes at 0.35
    assert solve(reads, "fresh", latency=0.5).value == 1  # only the read at 7


def test_endpoint_limit_is_shared_by_its_keys():
    same = tiny([(5.0, "ticker/BTC"), (5.0, "ticker/ETH")], ("10/5",), ("1/60",))
    other = tiny([(5.0, "ticker/BTC"), (5.0, "ls_ratio/BTC")], ("10/5",), ("1/60",))
    assert solve(same, "fresh").value == 1
    assert solve(other, "fresh").value == 2


def test_every_sliding_window_holds():
    # Two calls per 10 slots: three keys read every 5 s cannot all stay fresh.
    reads = tiny([(at + 0.5, key) for at in range(0, 30, 5)
                  for key in ("ls_ratio/BTC", "xtrades/BTC", "ticker/BTC")], ("2/10",))
    best = solve(reads, "fresh")
    assert best.optimal and violations(reads, best.calls) == []
    assert score(reads, best.calls).fresh == best.value
    assert violations(reads, [(0, "ticker/BTC"), (4, "ls_ratio/BTC"), (9, "xtrades/BTC")])


def test_critical_objective_counts_only_critical_reads():
    reads = tiny([(5.0, "ticker/BTC")] + [(at, "ls_ratio/BTC") for at in (5.0, 6.0, 7.0)],
                 ("1/60",))
    assert solve(reads, "fresh").value == 3
    critical = solve(reads, "critical")
    assert (critical.value, critical.reads, critical.calls[0][1]) == (1, 1, "ticker/BTC")


def test_implied_limits_are_left_out():
    limits = [Limit.parse(t) for t in ("100/60", "20/10", "10/5")]
    assert needed(limits) == [Limit(10, 5.0), Limit(100, 60.0)]
    assert needed([Limit(5, 10.0), Limit(5, 10.0)]) == [Limit(5, 10.0)]


def test_a_joint_optimum_gives_up_one_objective_for_a_floor_on_the_other():
    # One call in the whole trace. Calling B at slot 0 answers all five of its reads, one
    # fresh; calling it at slot 23 keeps its last four fresh and misses the first.
    reads = tiny([(1.0, "ls_ratio/B")] + [(at, "ls_ratio/B") for at in (25.0, 26.0, 27.0,
                                                                          28.0)]
                 + [(at, "xtrades/A") for at in (20.0, 21.0, 22.0)], ("1/30",))
    assert (solve(reads, "fresh").value, solve(reads, "answered").value) == (4, 5)
    keep_fresh = solve_joint(reads, "answered", "fresh", 4)
    assert (keep_fresh.value, keep_fresh.score.fresh) == (4, 4)
    keep_answered = solve_joint(reads, "fresh", "answered", 5)
    assert (keep_answered.value, keep_answered.score.answered) == (1, 5)
    assert solve_joint(reads, "answered", "fresh", 0).value == 5  # no floor: the optimum


def test_a_joint_optimum_can_also_keep_a_floor_of_critical_fresh_reads():
    # One call: ls_ratio/B answers three reads, the critical ticker/A one.
    reads = tiny([(5.0, "ticker/A")] + [(at, "ls_ratio/B") for at in (5.0, 6.0, 7.0)],
                 ("1/60",))
    free = solve_joint(reads, "answered", "fresh", 0)
    assert (free.value, free.calls[0][1]) == (3, "ls_ratio/B")
    critical = solve_joint(reads, "answered", "fresh", 0, critical_floor=1)
    assert (critical.value, critical.score.critical_fresh, critical.calls[0][1]) == (
        1, 1, "ticker/A")
    beyond = solve_joint(reads, "answered", "fresh", 0, critical_floor=2)
    assert (beyond.value, beyond.bound, beyond.calls, beyond.optimal) == (0, 0, [], False)
    assert beyond.status == "no schedule meets the floors"
    # A floor no read could count toward is out of reach too, not dropped.
    plain = tiny([(at, "ls_ratio/B") for at in (5.0, 6.0)], ("1/60",))
    assert solve_joint(plain, "answered", "fresh", 0, critical_floor=1).status == (
        "no schedule meets the floors")
    first_only = tiny([(0.5, "ls_ratio/B")], ("1/60",))
    assert solve_joint(first_only, "answered", "fresh", 1, after_first_read=True).status == (
        "no schedule meets the floors")


def test_bench_optimum_prints_what_is_left_when_every_target_is_met(capsys):
    from bench.__main__ import print_variants, solve_optima

    reads = tiny([(at, key) for at in (1.0, 8.0, 15.0, 22.0)
                  for key in ("ticker/A", "ls_ratio/B", "xtrades/C")], ("2/10",))
    optima = solve_optima(reads, time_limit=10)
    capsys.readouterr()
    print_variants(reads, optima, time_limit=10)
    lines = [line for line in capsys.readouterr().out.splitlines()
             if "meeting the fresh and critical targets" in line]
    assert len(lines) == 2 and "(with foresight)" in lines[0]
    assert "calling only keys already read, reads waiting 2 s" in lines[1]
    assert all("of the optimum (fresh " in line for line in lines)


def test_a_built_in_trace_of_another_length_has_optima_of_its_own(tmp_path):
    from bench.optimum import cached_optima

    cache = tmp_path / "optima.json"
    short = trace.named("zipf", seed=7, duration=8.0)
    longer = trace.named("zipf", seed=7, duration=12.0)
    first = cached_optima(short, 7, path=cache)
    second = cached_optima(longer, 7, path=cache)
    assert first["answered"]["reads"] == len(short.reads)
    assert second["answered"]["reads"] == len(longer.reads) > len(short.reads)
    assert set(json.loads(cache.read_text())) == {"zipf/seed7/8s", "zipf/seed7/12s"}
