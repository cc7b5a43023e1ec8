"""What an upstream says back, through the fetch agent: 429 pauses and the probe after
them, rate hints and the calls they miss, the circuit breaker."""

import asyncio

import httpx
import pytest

from quotacache.streams.records import Tick

from .fetch_messages import feedback, fetch, on_fetch_topic, order, outcomes
from .harness import START, running


async def test_a_429_pauses_the_service_and_sends_the_order_back_to_wait(rt, upstream):
    upstream.answer(httpx.Response(429, headers={"Retry-After": "30"}))
    await fetch(rt, order())
    [report] = on_fetch_topic(rt, "feedback")
    assert (report.outcome, report.retry_after) == ("rate_limited", 30)
    [again] = on_fetch_topic(rt, "order")
    assert again.attempt == 0 and again.key == "svc/ticker/BTC"
    assert rt.tasks.delayed == [] and outcomes(rt) == []
    assert rt.stats.by_endpoint["svc/ticker"]["rate_limited"] == 1


async def test_no_call_is_made_while_a_429_pause_lasts(rt, clock, upstream):
    await fetch(rt, feedback("rate_limited", retry_after=30), order())
    assert upstream.requests == []
    clock.advance(30)
    await fetch(rt, Tick(service="svc"))
    assert len(upstream.requests) == 1


async def test_no_call_is_made_after_a_429_answer_before_its_pause_is_stored(rt, clock,
                                                                           upstream):
    """Orders ahead of the 429's feedback on the fetch topic wait too (CI saw a second
    call go out in that window)."""
    upstream.answer(httpx.Response(429, headers={"Retry-After": "30"}))
    await fetch(rt, order())
    await fetch(rt, order(symbol="ETH"), Tick(service="svc"))  # the feedback not yet back
    assert len(upstream.requests) == 1
    clock.advance(30)
    await fetch(rt, Tick(service="svc"))  # the pause is over, its feedback still not back
    assert len(upstream.requests) == 1
    [report] = on_fetch_topic(rt, "feedback")
    await fetch(rt, report, Tick(service="svc"))
    assert len(upstream.requests) == 2


async def test_after_a_429_pause_one_call_goes_first_and_the_rest_wait_for_its_answer(
        rt, clock, upstream):
    """An old hint said calls remain; the 429 says otherwise, and its end frees an unknown
    number of calls: a burst of every queued order would meet as many 429s."""
    symbols = ["BTC", "ETH", "SOL", "XRP"]
    upstream.hold()
    await fetch(rt, feedback("success", remaining=40, reset_at=START + 600, limit=50),
                feedback("rate_limited", retry_after=30),
                *(order(symbol=s) for s in symbols))
    assert upstream.requests == []
    clock.advance(30)
    async with running(rt, "fetch") as agent:
        await agent.put(Tick(service="svc"), key="svc")
        assert rt.backlog.calls_in_flight("svc") == 1
        await agent.put(Tick(service="svc"), key="svc")
        assert rt.backlog.calls_in_flight("svc") == 1
        upstream.release()
        await rt.tasks.settle()


async def answered_with_a_hint(rt, clock, upstream, remaining):
    """One call that takes 0.5 s and says ``remaining`` calls remain: its feedback."""
    upstream.answer(httpx.Response(200, json=[], headers={
        "X-RateLimit-Remaining": str(remaining), "X-RateLimit-Reset": "30",
        "X-RateLimit-Limit": "50"}))
    upstream.hold()
    async with running(rt, "fetch") as agent:
        await agent.put(order(symbol="BTC"), key="svc")
        for _ in range(100):  # the call's task reaches the upstream
            if upstream.requests:
                break
            await asyncio.sleep(0)
        clock.advance(0.5)
        upstream.release()
        await rt.tasks.settle()
    upstream.gate = None
    [report] = on_fetch_topic(rt, "feedback")
    assert report.at == START + 0.5
    return report


async def test_a_rate_hint_counts_calls_decided_after_its_answer_as_spent(rt, clock,
                                                                          upstream):
    """The answer said 5 remain; before its feedback was read, two more calls were decided
    and answered (no longer under way, so counting calls under way would miss them)."""
    report = await answered_with_a_hint(rt, clock, upstream, 5)
    clock.advance(1)
    await fetch(rt, order(symbol="ETH"), order(symbol="SOL"))
    assert len(upstream.requests) == 3 and rt.backlog.calls_in_flight("svc") == 0
    await fetch(rt, report)
    assert rt.health.get("svc").hint_remaining == 3


async def test_a_rate_hint_counts_calls_under_way_as_spent_once(rt, clock, upstream):
    report = await answered_with_a_hint(rt, clock, upstream, 5)
    clock.advance(1)
    upstream.hold()
    async with running(rt, "fetch") as agent:
        await agent.put(order(symbol="ETH"), key="svc")  # under way, decided after the answer
        await agent.put(report, key="svc")
        assert rt.health.get("svc").hint_remaining == 4
        upstream.release()
        await rt.tasks.settle()


@pytest.mark.parametrize("waits", [("30", "1"), ("1", "30")])
async def test_a_shorter_retry_after_does_not_cut_a_429_pause_short(rt, clock, upstream,
                                                                    waits):
    """Two calls answered 429 in either order: the longer Retry-After holds."""
    upstream.answer(*(httpx.Response(429, headers={"Retry-After": w}) for w in waits))
    upstream.hold()
    async with running(rt, "fetch") as agent:
        await agent.put(order(symbol="BTC"), key="svc")
        await agent.put(order(symbol="ETH"), key="svc")
        upstream.release()
        await rt.tasks.settle()
    assert len(upstream.requests) == 2
    clock.advance(2)
    await fetch(rt, order(symbol="SOL"), Tick(service="svc"))
    assert len(upstream.requests) == 2


async def test_failures_reported_back_open_the_breaker_and_stop_calls(rt, clock, upstream):
    await fetch(rt, feedback("failure"), feedback("failure"), order())  # breaker_failures 2
    assert rt.health.get("svc").breaker == "open"
    assert upstream.requests == []
    clock.advance(30)  # breaker_cooldown: one trial call
    await fetch(rt, order(symbol="ETH"), Tick(service="svc"))
    assert len(upstream.requests) == 1


async def test_an_upstream_that_reports_no_calls_left_gets_none_until_its_reset(rt, clock,
                                                                               upstream):
    hint = feedback("success", remaining=0, reset_at=START + 100, limit=50)
    await fetch(rt, hint, order())
    assert rt.health.get("svc").hint_remaining == 0
    assert upstream.requests == []
    clock.advance(100)
    await fetch(rt, Tick(service="svc"))
    assert len(upstream.requests) == 1
