"""Admission of refresh requests: the ``admit`` agent."""

import pytest

from quotacache.admission import admit_request
from quotacache.policy.strategy import Strategy, StrategyState, pin
from quotacache.streams.records import FetchOrder, RefreshRequest

from .harness import START, running, store


def request(endpoint="ticker", symbol="BTC", **fields):
    return RefreshRequest(service="svc", endpoint=endpoint, symbol=symbol, **fields)


async def admit(rt, *requests):
    """Deliver requests on internal.requests, keyed by their cache key, as reads on a
    worker that does not own the key do."""
    async with running(rt, "admit") as agent:
        for req in requests:
            await agent.put(req, key=f"svc/{req.endpoint}/{req.symbol}",
                            topic=rt.topics.requests)


def orders(rt):
    return [order for _, order in rt.outbox.records(rt.topics.fetch)]


# -- requests for data -----------------------------------------------------------------

async def test_a_missing_key_becomes_one_fetch_order_keyed_by_service(rt):
    await admit(rt, request())
    sent = rt.outbox.records(rt.topics.fetch)
    assert [key for key, _ in sent] == ["svc"]
    order = sent[0][1]
    assert isinstance(order, FetchOrder)
    assert (order.endpoint, order.symbol, order.reason) == ("ticker", "BTC", "request")
    assert order.priority.value == "critical"  # the endpoint's configured priority
    assert order.requested_at == START
    assert order.fresh_until is None and not order.force


async def test_an_order_carries_how_often_its_key_is_read(rt):
    for second in range(30):
        rt.demand.read("svc/ticker/BTC", START - 30 + second)
    await admit(rt, request())
    [order] = orders(rt)
    assert order.rate == pytest.approx(rt.demand.rate("svc/ticker/BTC", START))
    assert order.rate > 0


async def test_an_order_carries_when_the_reader_waiting_for_it_gives_up(rt):
    with rt.waiters.watch("svc/ticker/BTC", until=START + 5):
        await admit(rt, request(reason="read"))
    await admit(rt, request(symbol="ETH", reason="read"))  # nobody waits for this one
    assert [o.readers_until for o in orders(rt)] == [START + 5, None]


async def test_a_reader_waiting_for_a_key_ordered_without_one_amends_its_order_once(rt):
    """The service's owner may be another worker: it learns of a reader waiting on the
    key's owner only from the order, so a waiting reader that comes later is sent on."""
    await admit(rt, request(reason="read"))  # a read that does not wait
    with rt.waiters.watch("svc/ticker/BTC", until=START + 5):
        await admit(rt, request(reason="read"), request(reason="read"))
    assert [(o.readers_until, o.rerank) for o in orders(rt)] == [
        (None, False), (START + 5, True)]


async def test_the_requests_priority_overrides_the_endpoints(rt):
    await admit(rt, request(priority="low"))
    assert orders(rt)[0].priority.value == "low"


async def test_a_fresh_entry_makes_no_order_and_counts_a_saved_call(rt, clock):
    await store(rt, "svc", "ticker", "BTC", {"p": 1}, fetched_at=START, ttl=60)
    clock.advance(59.9)
    await admit(rt, request())
    assert orders(rt) == []
    assert rt.stats.by_endpoint["svc/ticker"]["calls_saved"] == 1


async def test_a_stale_entry_is_ordered_with_when_its_data_stopped_being_fresh(rt, clock):
    await store(rt, "svc", "ticker", "BTC", {"p": 1}, fetched_at=START, ttl=60)
    clock.advance(60)
    await admit(rt, request())
    [order] = orders(rt)
    assert order.fresh_until == START + 60


async def test_force_orders_even_a_fresh_entry_and_says_so(rt):
    await store(rt, "svc", "ticker", "BTC", {"p": 1}, fetched_at=START, ttl=60)
    await admit(rt, request(force=True))
    [order] = orders(rt)
    assert order.force and order.fresh_until == START + 60


async def test_a_second_request_while_one_is_in_flight_makes_no_second_order(rt):
    await admit(rt, request(), request(force=True))
    assert len(orders(rt)) == 1
    assert rt.stats.by_endpoint["svc/ticker"]["calls_saved"] == 1


async def test_a_waiting_key_read_much_more_since_its_order_is_ordered_again(rt):
    """Its first read ranked it by a guess; a key that turns out popular must not wait
    behind that guess until its fetch lands."""
    await admit(rt, request(reason="read"))
    for _ in range(20):
        rt.demand.read("svc/ticker/BTC", START)
    await admit(rt, request(reason="read"), request(reason="read"))
    first, again = orders(rt)  # the third request found the rate already sent
    assert again.rate >= 1.5 * first.rate
    assert again.rerank and not first.rerank  # a new rank, never a call of its own
    assert rt.stats.by_endpoint["svc/ticker"]["calls_saved"] == 1


async def test_an_in_flight_mark_lost_with_its_outcome_expires_after_the_timeout(rt, clock):
    await admit(rt, request())
    clock.advance(rt.settings.cache.inflight_timeout)
    await admit(rt, request())
    assert len(orders(rt)) == 2


async def test_other_symbols_are_not_held_back_by_one_in_flight(rt):
    await admit(rt, request(symbol="BTC"), request(symbol="ETH"))
    assert [o.symbol for o in orders(rt)] == ["BTC", "ETH"]


async def test_an_endpoint_without_a_symbol_is_fetched_once_under_star(rt):
    await admit(rt, request("screener", symbol="BTC"), request("screener", symbol="ETH"))
    assert [o.symbol for o in orders(rt)] == ["*"]


async def test_a_list_endpoint_is_fetched_whole_for_any_symbol_it_fills(rt):
    await admit(rt, request("coinlist", symbol="BTC"))
    assert [o.symbol for o in orders(rt)] == ["*"]


# -- routing and bad messages ----------------------------------------------------------

async def test_a_refresh_keyed_another_way_is_rekeyed_once_through_internal_requests(rt):
    async with running(rt, "admit") as agent:
        await agent.put(b'{"service": "svc", "endpoint": "ticker", "symbol": "btc"}',
                        key=b"anything", topic=rt.topics.refresh)
    assert orders(rt) == []  # admitted later, on the key's own partition
    [(key, forwarded)] = rt.outbox.records(rt.topics.requests, RefreshRequest)
    assert key == "svc/ticker/BTC" and forwarded.symbol == "BTC"


async def test_a_refresh_already_keyed_by_its_cache_key_is_admitted_in_place(rt):
    async with running(rt, "admit") as agent:
        await agent.put(request(), key="svc/ticker/BTC", topic=rt.topics.refresh)
    assert rt.outbox.sent(rt.topics.requests) == []
    assert len(orders(rt)) == 1


async def test_a_message_that_does_not_validate_is_dead_lettered_naming_the_field(rt):
    async with running(rt, "admit") as agent:
        await agent.put(b'{"service": "svc", "endpoint": "ticker", "priority": "urgent"}',
                        key=b"k", topic=rt.topics.refresh)
    [reason] = rt.outbox.dead_letters()
    assert reason.startswith("priority:")
    assert orders(rt) == []


async def test_an_unknown_endpoint_is_dead_lettered_not_fetched(rt):
    async with running(rt, "admit") as agent:
        await agent.put(request("nope"), key="svc/nope/BTC", topic=rt.topics.requests)
    assert rt.outbox.dead_letters() == ["unknown endpoint 'nope' of service 'svc'"]
    assert orders(rt) == []
    assert rt.stats.by_endpoint["topic/internal.requests"]["dead_letters"] == 1


# -- sweeps ----------------------------------------------------------------------------

async def test_a_sweep_deletes_an_entry_past_max_staleness(rt, clock):
    key = await store(rt, "svc", "ticker", "BTC", {"p": 1}, fetched_at=START, ttl=60)
    clock.advance(3600)
    await admit(rt, request(reason="sweep"))
    assert rt.cache.get(key) is None
    assert orders(rt) == []


async def test_a_sweep_keeps_an_entry_refreshed_since_it_was_asked(rt, clock):
    key = await store(rt, "svc", "ticker", "BTC", {"p": 1}, fetched_at=START, ttl=60)
    clock.advance(3599)
    await admit(rt, request(reason="sweep"))
    assert rt.cache.get(key) is not None
    assert orders(rt) == []


# -- scheduled looks -------------------------------------------------------------------

async def scheduled_after(rt, clock, endpoint, age, ttl):
    await store(rt, "svc", endpoint, "BTC", {"p": 1}, fetched_at=START, ttl=ttl)
    clock.advance(age)
    await admit(rt, request(endpoint, reason="schedule"))
    return orders(rt)


async def test_a_scheduled_look_at_a_missing_key_orders_a_fetch(rt):
    await admit(rt, request(reason="schedule"))
    assert [o.reason for o in orders(rt)] == ["schedule"]


@pytest.mark.parametrize("strategy, due_at", [(Strategy.NORMAL, 300), (Strategy.CONSERVATIVE, 600)])
async def test_a_scheduled_look_fetches_only_a_key_due_before_the_next_scan(rt, clock, strategy,
                                                                           due_at):
    """NORMAL refreshes at the TTL (300 s), CONSERVATIVE lets keys age twice as long; the
    next scan is 5 s away."""
    state = StrategyState()
    pin(state, strategy, START)
    rt.control.save_strategy("svc", state)
    assert await scheduled_after(rt, clock, "ratio", age=due_at - 6, ttl=300) == []
    assert rt.stats.by_endpoint["svc/ratio"]["calls_saved"] == 0  # nothing was asked
    clock.advance(1)
    await admit(rt, request("ratio", reason="schedule"))
    assert len(orders(rt)) == 1


async def test_critical_data_keeps_its_ttl_even_when_the_service_is_minimal(rt, clock):
    state = StrategyState()
    pin(state, Strategy.MINIMAL, START)
    rt.control.save_strategy("svc", state)
    assert len(await scheduled_after(rt, clock, "ticker", age=55, ttl=60)) == 1  # 60 - 5


async def test_a_volatile_symbol_is_refreshed_at_the_aggressive_pace(rt, clock):
    rt.control.volatile["BTC"] = START + 600
    assert len(await scheduled_after(rt, clock, "ratio", age=145, ttl=300)) == 1  # 150 - 5


async def test_a_monitored_key_nobody_reads_is_still_worth_a_read_per_ttl(rt):
    await admit(rt, request("ratio", reason="schedule"))
    [order] = orders(rt)
    assert order.rate == pytest.approx(1 / 300)


async def test_an_order_that_could_not_be_sent_leaves_no_claim_behind(rt):
    """Admission runs on a read's path too (``quotacache/admission.py``): a send that
    fails must not leave a mark that turns every read of the key for ``inflight_timeout``
    into a call saved with no order behind it."""
    sent = rt.topics.fetch.send

    async def refuse(*args, **kwargs):
        raise RuntimeError("the producer refused")

    rt.topics.fetch.send = refuse
    with pytest.raises(RuntimeError):
        await admit_request(rt, request(reason="read"), "BTC", "svc/ticker/BTC")
    assert not rt.inflight.active("svc/ticker/BTC", START)
    rt.topics.fetch.send = sent
    await admit_request(rt, request(reason="read"), "BTC", "svc/ticker/BTC")
    assert len(orders(rt)) == 1 and rt.stats.totals()["calls_saved"] == 0
