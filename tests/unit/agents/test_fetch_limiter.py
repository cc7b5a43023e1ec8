"""The fetch agent under the limiter: calls wait for budget and go on a tick once a
window has passed, at most ``max_in_flight`` at once, late ones are decided again, and an
answered call counts from a jitter before its answer."""

import httpx

from quotacache.streams.records import Tick

from .fetch_messages import fetch, on_fetch_topic, order
from .harness import START, running


async def test_orders_beyond_the_budget_wait_in_the_queue_without_a_call(rt, upstream):
    await fetch(rt, *(order(symbol=s) for s in ["A", "B", "C", "D", "E"]))
    assert len(upstream.requests) == 4  # limits 4/60, no headroom
    assert len(rt.backlog.queues["svc"]) == 1
    assert rt.backlog.by_priority("svc")["critical"] == 1


async def test_a_waiting_order_counts_one_block_however_often_it_is_looked_at(rt):
    await fetch(rt, *(order(symbol=s) for s in "ABCDE"), Tick(service="svc"),
                Tick(service="svc"))
    assert rt.stats.by_endpoint["svc/ticker"]["rate_limit_blocks"] == 1


async def test_a_waiting_order_is_called_on_a_tick_once_its_window_has_passed(rt, clock,
                                                                              upstream):
    await fetch(rt, *(order(symbol=s) for s in "ABCDE"))
    assert len(upstream.requests) == 4
    clock.advance(59.999)
    await fetch(rt, Tick(service="svc"))
    # Answered at once, the calls count from a jitter before their answers: a window on.
    assert len(upstream.requests) == 4
    clock.advance(0.001)
    await fetch(rt, Tick(service="svc"))
    assert [r.url.params["symbol"] for r in upstream.requests] == ["A", "B", "C", "D", "E"]


async def test_first_fetches_wait_the_hold_after_the_first_order_and_the_busiest_goes_first(
        make_rt, clock, upstream):
    """At start-up the first slots go to the keys read most, not to the first ones read:
    first fetches wait ``first_fetch_hold`` after the service's first order; a forced
    order and later first fetches do not."""
    rt = make_rt(limits=["2/60"], first_fetch_hold=0.5)
    await fetch(rt, order("ticker", "FIRST"), order("ticker", "FORCED", force=True))
    assert [r.url.params["symbol"] for r in upstream.requests] == ["FORCED"]
    clock.advance(0.3)
    await fetch(rt, order("ticker", "BUSY", rate=3.0), Tick(service="svc"))
    assert len(upstream.requests) == 1
    clock.advance(0.2)
    await fetch(rt, Tick(service="svc"))
    assert [r.url.params["symbol"] for r in upstream.requests] == ["FORCED", "BUSY"]


async def test_the_only_slot_goes_to_the_order_worth_most(make_rt, clock, upstream):
    rt = make_rt(limits=["1/60"])
    await fetch(rt, order("ratio", "A"))  # takes the window's one call
    await fetch(rt, order("coinlist", "*"), order("ticker", "B"), order("ticker", "C", rate=2.0))
    clock.advance(60.25)
    await fetch(rt, Tick(service="svc"))
    # critical reads weigh most, and C is read more often than B
    assert [r.url.params.get("symbol") for r in upstream.requests] == ["A", "C"]


async def test_no_more_calls_run_at_once_than_max_in_flight(make_rt, upstream):
    rt = make_rt(max_in_flight=1, limits=["10/60"])
    upstream.hold()
    async with running(rt, "fetch") as agent:
        await agent.put(order(symbol="A"), key="svc")
        await agent.put(order(symbol="B"), key="svc")
        assert rt.backlog.calls_in_flight("svc") == 1
        assert [r.url.params["symbol"] for r in upstream.requests] == ["A"]
        upstream.release()
        await rt.tasks.settle()
        assert rt.backlog.calls_in_flight("svc") == 0
        await agent.put(Tick(service="svc"), key="svc")
    await rt.tasks.settle()
    assert [r.url.params["symbol"] for r in upstream.requests] == ["A", "B"]


async def test_a_call_that_cannot_leave_in_time_is_not_sent_but_decided_again(rt, clock,
                                                                            upstream):
    rt.tasks.hold()
    async with running(rt, "fetch") as agent:
        await agent.put(order(), key="svc")
    clock.advance(0.13)  # more than half the arrival jitter after the limiter's yes
    rt.tasks.release()
    await rt.tasks.settle()
    assert upstream.requests == []
    assert [o.key for o in on_fetch_topic(rt, "order")] == ["svc/ticker/BTC"]
    assert rt.backlog.calls_in_flight("svc") == 0 and not rt.backlog.calling
    assert rt.stats.by_endpoint["svc/ticker"]["late_calls"] == 1


async def test_an_answered_call_counts_from_a_jitter_before_its_answer(rt, clock,
                                                                       upstream):
    rt.tasks.hold()
    async with running(rt, "fetch") as agent:
        await agent.put(order(), key="svc")
    clock.advance(0.05)  # it leaves 50 ms after the limiter's yes, answered at once
    rt.tasks.release()
    await rt.tasks.settle()
    assert len(upstream.requests) == 1
    jitter = rt.settings.service("svc").arrival_jitter
    counts_from = round(START + 0.05 - jitter, 3)
    assert rt.limiter.times("svc") == rt.limiter.times("svc/ticker") == [counts_from]
    assert rt.limiter.decided("svc") == [START]


async def test_a_call_without_an_answer_counts_from_its_decision(rt, upstream):
    upstream.answer(httpx.ConnectError("refused"))
    await fetch(rt, order())
    assert rt.limiter.times("svc") == [START]  # the upstream may count it any time


async def test_a_refusal_is_an_answer_too(rt, upstream):
    upstream.answer(httpx.Response(503, json={}))
    await fetch(rt, order())
    jitter = rt.settings.service("svc").arrival_jitter
    assert rt.limiter.times("svc") == [round(START - jitter, 3)]


