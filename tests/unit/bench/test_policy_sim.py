"""The policy simulation's oracles: what they tell the policy, and what they refuse."""

from __future__ import annotations

import json

import pytest

from bench import policy_sim, trace
from bench.oracles import KnownProcess, KnownReads, KnownValues
from quotacache.policy.queue import Queued
from quotacache.streams.records import FetchOrder
from quotacache.units import Priority
from tests.windows import max_in_any_window

from .test_optimum import tiny


def test_known_process_rates_are_the_reads_expected_over_the_ttl_ahead():
    zipf = trace.named("zipf", 7)
    rates = KnownProcess(zipf)
    ttl = zipf.ttls["ticker"]
    assert rates.rate("ticker/BTC", 30.0) == pytest.approx(
        zipf.process.expected("ticker/BTC", 30.0, 30.0 + ttl) / ttl)
    # It knows the spike before a read shows it, and that nothing is read after the end.
    assert rates.rate("ticker/AVAX", 44.0) > 2 * rates.rate("ticker/AVAX", 10.0)
    assert rates.rate("ticker/BTC", 80.0) < rates.rate("ticker/BTC", 60.0) / 2
    # A TTL longer than the horizon counts only the horizon's reads.
    assert rates.rate("ai_screener/*", 10.0) == pytest.approx(
        zipf.process.expected("ai_screener/*", 10.0, 70.0) / 60.0)


def test_known_process_needs_a_built_in_trace(tmp_path, monkeypatch, capsys):
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"at": 1, "service": "cryptometer", "endpoint": "ticker",
                                "symbol": "BTC"}) + "\n")
    with pytest.raises(ValueError, match="--known-process needs a built-in one"):
        KnownProcess(trace.named(str(path)))
    monkeypatch.setattr("sys.argv", ["policy_sim", "--trace", str(path), "--known-process"])
    with pytest.raises(SystemExit) as exited:
        policy_sim.main()
    assert exited.value.code == 2
    assert "--known-process needs a built-in one" in capsys.readouterr().err


def test_known_reads_are_the_reads_to_come_in_the_ttl_ahead():
    zipf = trace.named("zipf", 7)
    rates = KnownReads(zipf)
    ttl = zipf.ttls["ticker"]
    coming = sum(1 for r in zipf.reads if r.key == "ticker/ETH" and 30.0 <= r.at < 30.0 + ttl)
    assert coming > 0
    assert rates.rate("ticker/ETH", 30.0) == coming / ttl
    assert rates.rate("ticker/ETH", zipf.duration) == 0.0


@pytest.mark.parametrize("oracle", [KnownProcess, KnownReads])
def test_a_policy_told_by_an_oracle_stays_within_every_limit(oracle):
    short = trace.named("tight", 7, duration=30.0)
    result = policy_sim.simulate(short, rates=oracle(short))
    assert result.calls and result.fresh > 0
    assert policy_sim.violations(short, result) == []


def test_the_simulation_decides_as_the_workers_would_on_the_trace():
    short = trace.named("tight", 7, duration=30.0)
    config, _ = policy_sim.service_config(short)
    assert [str(lim) for lim in config.limits] == [str(lim) for lim in short.limits.service]
    assert config.endpoints["ticker"].ttl == short.ttls["ticker"]
    # The workers count each call over its window plus their arrival jitter, from its
    # decision until its answer, then from a jitter before its answer: bursts a window
    # apart are at least the jitter less the latency further apart than the limit
    # alone requires, and closer than the window plus the jitter where a limit binds.
    calls = [at for at, _ in policy_sim.simulate(short).calls]
    crowded = []
    for limit in config.limits:
        window = limit.seconds + config.arrival_jitter
        assert max_in_any_window(calls, window - trace.LATENCY) <= limit.calls
        crowded.append(max_in_any_window(calls, window) > limit.calls)
    assert any(crowded)


def test_known_values_are_the_reads_a_call_makes_fresh_and_answers():
    zipf = trace.named("zipf", 7)
    values = KnownValues.of(zipf, latency=0.5, answered_weight=2.0)
    ttl = zipf.ttls["ls_ratio"]
    times = [r.at for r in zipf.reads if r.key == "ls_ratio/ETH"]

    def queued(fresh_until):
        return Queued("ls_ratio/ETH", FetchOrder(
            service="cryptometer", endpoint="ls_ratio", symbol="ETH", priority=Priority.MEDIUM,
            reason="read", requested_at=20.0, fresh_until=fresh_until))

    fresh = sum(1 for t in times if 20.5 < t <= 20.5 + ttl)
    later = sum(1 for t in times if t > 20.5 + ttl)
    assert fresh > 0 and later > 0
    # A first fetch: the reads in the TTL after it lands, and twice those after that.
    assert values.value(queued(None), 20.0) == fresh + 2 * later
    # A renewal buys only the reads the current data does not serve.
    assert values.value(queued(40.0), 20.0) == sum(1 for t in times if 40.0 < t <= 20.5 + ttl)
    # The renewal a call made now will want: the reads of the TTL after this one.
    assert values.refresh_value(queued(None), 20.0) == sum(
        1 for t in times if 20.5 + ttl < t <= 20.5 + 2 * ttl)


def test_a_policy_told_the_values_stays_within_every_limit():
    short = trace.named("tight", 7, duration=30.0)
    result = policy_sim.simulate(short, rates=KnownReads(short),
                                 valuation=KnownValues.of(short, trace.LATENCY))
    assert result.calls and result.fresh > 0
    assert policy_sim.violations(short, result) == []


@pytest.mark.parametrize(("answered_weight", "called"), [(1.0, "xtrades/B"), (0.0, "ls_ratio/A")])
def test_known_values_choose_the_call_by_the_reads_it_answers(answered_weight, called):
    # One call in the trace. A has three reads in the TTL after its first fetch, B one,
    # then five more after it: B's first fetch answers six reads, A's three.
    reads = [(at, "ls_ratio/A") for at in (1.0, 2.0, 3.0, 4.0)] + [
        (at, "xtrades/B") for at in (1.2, 3.0, 10.0, 12.0, 14.0, 16.0, 18.0)]
    one_call = tiny(reads, ("1/60",))
    result = policy_sim.simulate(one_call, rates=KnownReads(one_call), valuation=KnownValues.of(
        one_call, trace.LATENCY, answered_weight=answered_weight))
    assert [key for _, key in result.calls] == [called]


@pytest.mark.parametrize(("argv", "says"), [
    (["--answered-weight", "2"], "--answered-weight needs --known-values"),
    (["--known-values", "--answered-bonus", "30"], "--answered-bonus is the estimated"),
])
def test_an_option_that_would_be_ignored_is_refused(monkeypatch, capsys, argv, says):
    monkeypatch.setattr("sys.argv", ["policy_sim", *argv])
    with pytest.raises(SystemExit) as exited:
        policy_sim.main()
    assert exited.value.code == 2 and says in capsys.readouterr().err
