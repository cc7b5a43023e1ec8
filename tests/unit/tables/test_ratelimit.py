"""The rate limiter's state: send times of recent calls per scope, in a table and a journal."""

from pathlib import Path

import pytest

from quotacache.tables.ratelimit import RateLimiter, ServiceBudget, journal_dir, worker_name

from .conftest import settings_for, stream_runner

NOW = 1_000_000.0
JITTER = 0.25


def service(limits=(), endpoint_limits=(), **fields):
    return {"base_url": "http://upstream.test", "limits": list(limits),
            "endpoint_limits": list(endpoint_limits), "arrival_jitter": JITTER,
            "endpoints": {"ticker": {"path": "/t", "ttl": 60, "priority": "critical"},
                          "ratio": {"path": "/r", "ttl": 300, "priority": "high"}},
            **fields}


@pytest.fixture
def limiter_for(make_app, tmp_path):
    """(limiter, run-in-stream) for one service ``svc`` with the given settings."""

    def make(**fields):
        settings = settings_for(tmp_path, svc=service(**fields))
        app = make_app(settings)
        return RateLimiter(app, settings), stream_runner(app)

    return make


async def calls(run, budget, endpoint, times, now=NOW):
    """Ask for ``times`` calls at ``now``; record each allowed one. The decisions, in order."""

    def ask():
        decisions = []
        for _ in range(times):
            decision = budget.check(endpoint, now)
            if decision.allowed:
                budget.record(endpoint, now)
            decisions.append(decision)
        return decisions

    return await run(ask)


async def test_calls_are_allowed_until_the_service_limit_is_used_up(limiter_for):
    limiter, run = limiter_for(limits=["3/60"])
    decisions = await calls(run, ServiceBudget(limiter, "svc"), "ticker", 4)
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert decisions[-1].blocked_by == "svc 3/60"
    assert decisions[-1].wait == pytest.approx(60 + JITTER)


async def test_every_endpoint_counts_against_the_service_limit(limiter_for):
    limiter, run = limiter_for(limits=["2/60"])
    budget = ServiceBudget(limiter, "svc")
    await calls(run, budget, "ticker", 2)
    [ratio] = await calls(run, budget, "ratio", 1)
    assert not ratio.allowed and ratio.blocked_by == "svc 2/60"


async def test_an_endpoint_limit_blocks_only_its_own_endpoint(limiter_for):
    limiter, run = limiter_for(limits=["100/60"], endpoint_limits=["1/60"])
    budget = ServiceBudget(limiter, "svc")
    first, second = await calls(run, budget, "ticker", 2)
    assert first.allowed and second.blocked_by == "svc/ticker 1/60"
    [ratio] = await calls(run, budget, "ratio", 1)
    assert ratio.allowed


async def test_a_call_counts_for_its_window_plus_the_arrival_jitter(limiter_for):
    limiter, run = limiter_for(limits=["1/60"])
    budget = ServiceBudget(limiter, "svc")
    await calls(run, budget, "ticker", 1)
    [early] = await calls(run, budget, "ticker", 1, now=NOW + 60 + JITTER - 0.001)
    [on_time] = await calls(run, budget, "ticker", 1, now=NOW + 60 + JITTER)
    assert not early.allowed and on_time.allowed


async def test_an_answered_call_counts_from_a_jitter_before_its_answer(limiter_for):
    limiter, run = limiter_for(limits=["1/60"])
    budget = ServiceBudget(limiter, "svc")
    await calls(run, budget, "ticker", 1)
    limiter.answered("svc", "ticker", NOW, NOW + 0.1)  # answered 100 ms after its slot
    assert limiter.times("svc") == limiter.times("svc/ticker") == [NOW + 0.1 - JITTER]
    assert limiter.times("svc/ratio") == []
    assert limiter.decided("svc") == [NOW]  # what the answers' hints are compared with
    fresh = ServiceBudget(limiter, "svc")
    [early] = await calls(run, fresh, "ticker", 1, now=NOW + 60.1 - 0.001)
    [on_time] = await calls(run, fresh, "ticker", 1, now=NOW + 60.1)
    assert not early.allowed and on_time.allowed


async def test_a_record_never_moves_later_than_its_decision(limiter_for):
    limiter, run = limiter_for(limits=["2/60"])
    budget = ServiceBudget(limiter, "svc")
    await calls(run, budget, "ticker", 2)  # one drain: both in the same millisecond
    limiter.answered("svc", "ticker", NOW, NOW + JITTER + 1.0)  # a slow answer: no move
    limiter.answered("svc", "ticker", NOW, NOW)
    assert limiter.times("svc") == [NOW - JITTER, NOW]


async def test_a_restarted_limiter_counts_answered_calls_from_their_decision(limiter_for):
    before, run = limiter_for(limits=["1/60"])
    before.open_journal(NOW)
    await calls(run, ServiceBudget(before, "svc"), "ticker", 1)
    before.answered("svc", "ticker", NOW, NOW)
    before.journal.close()
    after, run = limiter_for(limits=["1/60"])  # the move was this worker's memory only
    after.open_journal(NOW + 1)
    assert after.times("svc") == [NOW]
    after.journal.close()


async def test_headroom_keeps_calls_free_below_each_limit(limiter_for):
    limiter, run = limiter_for(limits=["10/60"], headroom=0.2)
    decisions = await calls(run, ServiceBudget(limiter, "svc"), "ticker", 9)
    assert sum(d.allowed for d in decisions) == 8


async def test_a_call_is_recorded_in_the_service_and_its_endpoint(limiter_for):
    limiter, run = limiter_for(limits=["10/60"])
    budget = ServiceBudget(limiter, "svc")
    await calls(run, budget, "ticker", 1, now=NOW + 0.1234)
    assert budget.times("svc") == [NOW + 0.123]  # to the millisecond
    assert budget.times("svc/ticker") == [NOW + 0.123]
    assert budget.times("svc/ratio") == []


async def test_send_times_older_than_every_window_are_dropped_on_the_next_write(limiter_for):
    limiter, run = limiter_for(limits=["10/60"])
    budget = ServiceBudget(limiter, "svc")
    await calls(run, budget, "ticker", 1)
    await calls(run, budget, "ticker", 1, now=NOW + 30)
    await calls(run, budget, "ticker", 1, now=NOW + 61)
    assert budget.times("svc") == [NOW + 30, NOW + 61]


async def test_usage_lists_the_service_limits_and_only_the_busy_endpoints(limiter_for):
    limiter, run = limiter_for(limits=["10/60"], endpoint_limits=["5/60"], headroom=0.2)
    await calls(run, ServiceBudget(limiter, "svc"), "ticker", 3)
    rows = await run(lambda: limiter.usage("svc", NOW))
    assert rows == [
        {"scope": "svc", "limit": "10/60", "used": 3, "allowance": 8, "left": 5},
        {"scope": "svc/ticker", "limit": "5/60", "used": 3, "allowance": 4, "left": 1},
    ]


async def test_an_idle_service_shows_its_limits_with_nothing_used(limiter_for):
    limiter, run = limiter_for(limits=["10/60", "3/5"], endpoint_limits=["5/60"])
    rows = await run(lambda: limiter.usage("svc", NOW))
    assert [(r["scope"], r["limit"], r["used"]) for r in rows] == [
        ("svc", "10/60", 0), ("svc", "3/5", 0)]


def test_the_budget_of_a_service_carries_its_headroom_and_jitter(limiter_for):
    limiter, _ = limiter_for(limits=["10/60"], headroom=0.1, arrival_jitter=0.5)
    budget = ServiceBudget(limiter, "svc")
    assert (budget.headroom, budget.jitter) == (0.1, 0.5)
    assert [s.name for s in budget.scopes("ticker")] == ["svc", "svc/ticker"]


# -- the journal -----------------------------------------------------------------------

async def test_a_restarted_limiter_counts_the_calls_journaled_before_the_restart(limiter_for):
    before, run = limiter_for(limits=["2/60"])
    before.open_journal(NOW)
    await calls(run, ServiceBudget(before, "svc"), "ticker", 1)
    await calls(run, ServiceBudget(before, "svc"), "ticker", 1, now=NOW + 0.5)
    before.journal.close()
    after, run = limiter_for(limits=["2/60"])  # a new table: its changelog was lost
    after.open_journal(NOW + 1)
    [decision] = await calls(run, ServiceBudget(after, "svc"), "ticker", 1, now=NOW + 1)
    after.journal.close()
    assert not decision.allowed and decision.blocked_by == "svc 2/60"


async def test_a_call_in_both_the_table_and_the_journal_counts_once(limiter_for):
    limiter, run = limiter_for(limits=["2/60"])
    limiter.open_journal(NOW)
    budget = ServiceBudget(limiter, "svc")
    await calls(run, budget, "ticker", 1)
    limiter.journal.close()
    limiter.open_journal(NOW + 1)  # the journal now holds the call the table holds
    [decision] = await calls(run, budget, "ticker", 1, now=NOW + 1)
    limiter.journal.close()
    assert decision.allowed


async def test_calls_sent_in_the_same_millisecond_each_count_after_a_restart(limiter_for):
    before, run = limiter_for(limits=["2/60"])
    before.open_journal(NOW)
    await calls(run, ServiceBudget(before, "svc"), "ticker", 2)  # one drain: one clock
    before.journal.close()
    after, run = limiter_for(limits=["2/60"])
    after.open_journal(NOW + 1)
    [decision] = await calls(run, ServiceBudget(after, "svc"), "ticker", 1, now=NOW + 1)
    after.journal.close()
    assert not decision.allowed


def test_the_journal_lives_outside_the_data_dir_that_a_new_broker_wipes(tmp_path):
    settings = settings_for(tmp_path)
    assert not journal_dir(settings).is_relative_to(settings.data_dir)


def test_the_default_journal_does_not_depend_on_the_working_directory(tmp_path, monkeypatch):
    """With the default, relative data dir, a worker started again from another
    directory has another data dir: its journal, and the calls in it, must be found."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    settings = settings_for(tmp_path).model_copy(update={"data_dir": Path("quotacache-data")})
    seen = set()
    for cwd in ("a", "b"):
        (tmp_path / cwd).mkdir()
        monkeypatch.chdir(tmp_path / cwd)
        seen.add(journal_dir(settings))
    assert seen == {tmp_path / "state" / "quotacache" / "journal" / settings.app_id}


def test_a_worker_keeps_its_journal_name_across_restarts_and_no_two_share_one(tmp_path):
    one, other = settings_for(tmp_path / "w1"), settings_for(tmp_path / "w2")
    assert worker_name(one) == worker_name(settings_for(tmp_path / "w1"))
    assert worker_name(one) != worker_name(other)
