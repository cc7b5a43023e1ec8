"""The scheduler: scans of monitored symbols, strategy evaluation, volatility signals."""

from quotacache.agents.scheduler import scheduled_requests, thresholds
from quotacache.streams.records import FetchOrder, RefreshRequest, VolatilitySignal

from .harness import START, running, timer


def monitor(rt, **symbols):
    for symbol, endpoints in symbols.items():
        rt.control.monitored[symbol] = endpoints


def own_every_service(rt):
    """This worker is the owner of every service (the assignment a broker would give)."""
    rt.app.router.key_store = lambda table, key: rt.app.conf.canonical_url


async def use_whole_budget(rt):
    """Four calls of svc (limits 4/60) through the fetch agent."""
    async with running(rt, "fetch") as agent:
        for symbol in "ABCD":
            await agent.put(FetchOrder(service="svc", endpoint="ticker", symbol=symbol,
                                       priority="critical", reason="request",
                                       requested_at=START), key="svc")
    await rt.tasks.settle()


# -- scans -----------------------------------------------------------------------------

async def test_each_monitored_symbol_and_endpoint_is_one_scheduled_request(rt):
    monitor(rt, BTC=["svc/ticker", "svc/ratio"], ETH=["svc/ticker"])
    requests = dict(scheduled_requests(rt))
    assert sorted(requests) == ["svc/ratio/BTC", "svc/ticker/BTC", "svc/ticker/ETH"]
    assert {r.reason for r in requests.values()} == {"schedule"}
    assert requests["svc/ticker/ETH"].symbol == "ETH"


async def test_an_endpoint_without_a_symbol_is_scheduled_once_for_all_symbols(rt):
    monitor(rt, BTC=["svc/screener"], ETH=["svc/screener"])
    assert [key for key, _ in scheduled_requests(rt)] == ["svc/screener/*"]


async def test_endpoints_removed_from_the_configuration_are_skipped(rt):
    monitor(rt, BTC=["svc/gone", "other/ticker", "svc/ticker"])
    assert [key for key, _ in scheduled_requests(rt)] == ["svc/ticker/BTC"]


async def test_the_scan_timer_publishes_each_request_keyed_by_its_cache_key(rt):
    monitor(rt, BTC=["svc/ticker"])
    await timer(rt, "schedule_monitored")()
    [(key, request)] = rt.outbox.records(rt.topics.requests, RefreshRequest)
    assert key == "svc/ticker/BTC" and request.reason == "schedule"


async def test_nothing_is_published_when_nothing_is_monitored(rt):
    await timer(rt, "schedule_monitored")()
    assert rt.outbox.sent(rt.topics.requests) == []


# -- strategies ------------------------------------------------------------------------

def test_the_thresholds_come_from_the_scheduler_settings(rt):
    t = thresholds(rt)
    cfg = rt.settings.scheduler
    assert (t.conservative_above, t.minimal_above, t.normal_below, t.min_dwell) == (
        cfg.conservative_above, cfg.minimal_above, cfg.normal_below, cfg.min_dwell)


async def test_the_owner_moves_a_service_using_its_whole_budget_to_minimal(rt):
    own_every_service(rt)
    await use_whole_budget(rt)
    await timer(rt, "evaluate_strategies")()
    state = rt.control.strategy("svc")
    assert state.strategy == "MINIMAL" and state.reason == "budget use 100%"
    assert state.since == START


async def test_a_service_this_worker_does_not_own_is_left_to_its_owner(rt):
    await use_whole_budget(rt)
    await timer(rt, "evaluate_strategies")()
    assert rt.control.strategy("svc").strategy == "NORMAL"
    assert rt.control.strategies.get("svc") is None


async def test_an_idle_service_stays_normal_and_nothing_is_written(rt):
    own_every_service(rt)
    await timer(rt, "evaluate_strategies")()
    assert rt.control.strategies.get("svc") is None


async def test_the_upstreams_own_budget_report_counts_too(rt):
    own_every_service(rt)
    async with running(rt, "fetch") as agent:
        await agent.put(b'{"kind": "feedback", "service": "svc", "endpoint": "ticker", '
                        b'"outcome": "success", "remaining": 15, "limit": 100, '
                        b'"reset_at": 1000100.0, "at": 1000000.0}', key="svc")
    await timer(rt, "evaluate_strategies")()
    assert rt.control.strategy("svc").strategy == "CONSERVATIVE"  # 85 % used


# -- volatility ------------------------------------------------------------------------

async def signal(rt, symbol, score):
    async with running(rt, "volatility") as agent:
        await agent.put(VolatilitySignal(symbol=symbol, score=score), key=b"any")


async def test_a_strong_volatility_signal_makes_the_symbol_aggressive_for_a_while(rt, clock):
    await signal(rt, "btc", 0.7)
    assert rt.control.volatile_until("BTC", START) == START + 600
    assert rt.control.volatile_until("BTC", START + 600) is None
    assert rt.stats.events["volatility_signals"] == 1


async def test_a_signal_beyond_the_cap_of_volatile_symbols_is_dead_lettered(rt, monkeypatch):
    from quotacache.tables import control

    monkeypatch.setattr(control, "MAX_VOLATILE", 1)
    await signal(rt, "BTC", 0.9)
    await signal(rt, "ETH", 0.9)
    assert rt.outbox.dead_letters() == ["too many symbols are volatile at once"]
    assert rt.control.volatile_until("ETH", START) is None


async def test_a_weak_volatility_signal_changes_nothing(rt):
    await signal(rt, "BTC", 0.69)
    assert rt.control.volatile_until("BTC", START) is None
    assert rt.stats.events["volatility_signals"] == 0


async def test_a_market_wide_signal_makes_every_symbol_volatile(rt):
    await signal(rt, "*", 0.9)
    assert rt.control.volatile_until("ETH", START) == START + 600


async def test_a_bad_volatility_signal_is_dead_lettered(rt):
    async with running(rt, "volatility") as agent:
        await agent.put(b'{"symbol": "BTC", "score": 1.5}', key=b"any")
    [reason] = rt.outbox.dead_letters()
    assert reason.startswith("score:")
    assert rt.control.volatile_until("BTC", START) is None
