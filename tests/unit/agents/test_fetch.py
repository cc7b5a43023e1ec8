"""The fetch agent: calls and their data, freshness, retries, drops, ticks (the limiter:
test_fetch_limiter.py; what the upstream says back about its limits:
test_fetch_feedback.py)."""

import asyncio

import httpx
import pytest
from faust.types import TP

from quotacache.streams.records import Tick
from quotacache.web.status import running_problem

from .fetch_messages import data, fetch, on_fetch_topic, order, outcomes
from .harness import START, running, timer

# -- calls and their data --------------------------------------------------------------

async def test_an_admitted_order_is_one_call_whose_data_goes_to_the_endpoints_topic(rt, upstream):
    await fetch(rt, order(symbol="BTC"))
    [request] = upstream.requests
    assert request.url.path == "/ticker" and request.url.params["symbol"] == "BTC"
    [(key, record)] = data(rt)
    assert key == "svc/ticker/BTC"
    assert (record.data, record.fetched_at, record.ttl) == ({"price": 1}, START, 60)
    assert rt.stats.by_endpoint["svc/ticker"]["upstream_calls"] == 1


async def test_a_successful_call_reports_success_with_the_upstreams_rate_hint(rt, upstream):
    upstream.answer(httpx.Response(200, json=[], headers={
        "X-RateLimit-Remaining": "7", "X-RateLimit-Reset": "30", "X-RateLimit-Limit": "50"}))
    await fetch(rt, order())
    [report] = on_fetch_topic(rt, "feedback")
    assert report.outcome == "success"
    assert (report.remaining, report.reset_at, report.limit) == (7, START + 30, 50)


async def test_a_list_answer_fills_the_whole_list_and_each_listed_symbol(rt, upstream):
    upstream.answer(httpx.Response(200, json=[{"symbol": "btc", "rank": 1},
                                              {"symbol": "ETH", "rank": 2},
                                              {"rank": 3}]))
    await fetch(rt, order("coinlist", "*"))
    keys = [key for key, _ in data(rt, "coinlist")]
    assert keys == ["svc/coinlist/*", "svc/coinlist/BTC", "svc/coinlist/ETH"]
    assert data(rt, "coinlist")[1][1].data == {"symbol": "btc", "rank": 1}
    assert len(upstream.requests) == 1


# -- freshness, planned refreshes, drops --------------------------------------------

async def test_a_planned_refresh_of_a_key_nobody_reads_is_dropped_without_a_call(rt,
                                                                                upstream):
    await fetch(rt, order(rate=0.0, fresh_until=START + 1, reason="planned"))
    assert upstream.requests == [] and len(rt.backlog.queues["svc"]) == 0
    assert rt.stats.by_endpoint["svc/ticker"]["dropped_unread"] == 1


async def test_an_order_dropped_as_unread_releases_its_key(rt):
    await fetch(rt, order(rate=0.0, fresh_until=START - 1, reason="request"))
    assert [(key, o.outcome) for key, o in outcomes(rt)] == [("svc/ticker/BTC", "dropped")]


async def test_a_planned_refresh_is_called_as_its_data_is_about_to_expire(rt, clock,
                                                                          upstream):
    planned = order(rate=1.0, fresh_until=START + 60, reason="planned")
    await fetch(rt, planned)
    assert upstream.requests == []  # still fresh: it waits
    clock.advance(30)
    await fetch(rt, Tick(service="svc"))
    assert upstream.requests == []
    clock.advance(29)  # a call's latency (and a margin) before the data expires
    await fetch(rt, Tick(service="svc"))
    assert len(upstream.requests) == 1


async def test_a_forced_order_calls_even_a_fresh_key(rt, upstream):
    await fetch(rt, order(rate=1.0, fresh_until=START + 60, force=True))
    assert len(upstream.requests) == 1


async def test_an_order_for_a_key_whose_call_is_under_way_is_not_queued(rt, upstream):
    upstream.hold()
    async with running(rt, "fetch") as agent:
        await agent.put(order(), key="svc")
        await agent.put(order(), key="svc")
        assert len(rt.backlog.queues["svc"]) == 0
        upstream.release()
        await rt.tasks.settle()
    assert len(upstream.requests) == 1
    assert "svc/ticker/BTC" not in rt.backlog.calling


async def test_a_new_rank_for_an_order_no_longer_waiting_makes_no_call(rt, upstream):
    """A reranked order that arrives after its key's call went (the race that made two
    calls of one refresh) is dropped; one for a waiting order only raises its rate."""
    await fetch(rt, order(), order(rerank=True, rate=5.0))
    assert len(upstream.requests) == 1
    await fetch(rt, *(order(symbol=s) for s in "ABC"), order(symbol="E", rate=0.1),
                order(symbol="E", rerank=True, rate=5.0))
    [waiting] = rt.backlog.queues["svc"].entries()
    assert waiting.key == "svc/ticker/E" and waiting.rate(START) == 5.0
    assert not waiting.order.rerank  # a retry of it is a real order


async def test_a_full_queue_pushes_out_the_order_read_least(make_rt, upstream):
    rt = make_rt(limits=["1/60"], queue_limit=2)
    await fetch(rt, order(symbol="A"), order("ratio", "B", rate=0.5),
                order("coinlist", "*", rate=0.0), order(symbol="C", rate=0.2))
    [(key, outcome)] = outcomes(rt)
    assert key == "svc/coinlist/*"
    assert (outcome.outcome, outcome.detail) == ("dropped", "queue full")
    assert sorted(q.key for q in rt.backlog.queues["svc"].entries()) == [
        "svc/ratio/B", "svc/ticker/C"]


# -- failures --------------------------------------------------------------------------

async def test_a_failed_call_reports_failure_and_is_retried_after_a_jittered_backoff(rt,
                                                                                   upstream):
    upstream.answer(httpx.Response(500))
    await fetch(rt, order())
    assert [f.outcome for f in on_fetch_topic(rt, "feedback")] == ["failure"]
    [(delay, resend)] = rt.tasks.delayed
    assert 0 <= delay <= 0.5  # retry_base x 2 ** 0
    await resend
    [retry] = on_fetch_topic(rt, "order")
    assert retry.attempt == 1 and retry.key == "svc/ticker/BTC"
    assert retry.requested_at == START  # a retry keeps the age of the request
    assert rt.stats.by_endpoint["svc/ticker"]["retries"] == 1
    assert outcomes(rt) == []


async def test_after_the_last_attempt_the_fetch_ends_with_an_error_outcome(rt, upstream):
    upstream.answer(httpx.Response(503))
    await fetch(rt, order(attempt=2))  # retry_attempts = 2
    assert rt.tasks.delayed == []
    [(key, outcome)] = outcomes(rt)
    assert key == "svc/ticker/BTC"
    assert outcome.outcome == "error" and "HTTP 503" in outcome.detail


async def test_a_refusal_that_would_fail_again_is_not_retried(rt, upstream):
    upstream.answer(httpx.Response(404))
    await fetch(rt, order())
    assert rt.tasks.delayed == []
    [(_, outcome)] = outcomes(rt)
    assert outcome.outcome == "error" and "HTTP 404" in outcome.detail
    assert [f.outcome for f in on_fetch_topic(rt, "feedback")] == ["failure"]


async def test_an_answer_that_is_not_json_is_not_retried(rt, upstream):
    upstream.answer(httpx.Response(200, text="<html>"))
    await fetch(rt, order())
    assert rt.tasks.delayed == []
    assert [o.outcome for _, o in outcomes(rt)] == ["error"]


async def test_an_answer_larger_than_the_cap_is_not_retried(make_rt, upstream):
    rt = make_rt(max_answer_bytes=1024)
    upstream.answer(httpx.Response(200, content=b" " * 2048))  # would fail again: too large
    await fetch(rt, order())
    assert rt.tasks.delayed == []
    [(_, outcome)] = outcomes(rt)
    assert outcome.outcome == "error" and "larger than 1024 bytes" in outcome.detail
    assert len(upstream.requests) == 1


async def test_no_retry_lands_past_the_retry_deadline(rt, upstream):
    upstream.answer(httpx.Response(500))
    await fetch(rt, order(requested_at=START - 30.5))  # retry_deadline 30 s
    assert rt.tasks.delayed == []
    assert [o.outcome for _, o in outcomes(rt)] == ["error"]


async def test_an_unexpected_client_exception_is_a_failure_not_a_lost_order(rt, upstream):
    upstream.answer(RuntimeError("bug"))
    await fetch(rt, order())
    assert rt.backlog.calls_in_flight("svc") == 0
    assert [f.outcome for f in on_fetch_topic(rt, "feedback")] == ["failure"]
    assert len(rt.tasks.delayed) == 1
    assert rt.failures.total == {"the upstream call": 1}


async def test_a_bug_on_every_call_turns_health_unhealthy(rt, upstream):
    """Every read is still answered (stale or a miss) while each call fails on a bug:
    only /health can tell (the reason of its 503)."""
    upstream.answer(*[RuntimeError("bug") for _ in range(3)])
    for symbol in ("A", "B"):
        await fetch(rt, order(symbol=symbol))
    assert running_problem(rt) is None
    await fetch(rt, order(symbol="C"))
    assert running_problem(rt) == ("the upstream call failing (3 times in 0 s): "
                                   "RuntimeError: bug")


# -- bad messages and ticks ------------------------------------------------------------

async def test_messages_for_unknown_services_or_endpoints_are_dead_lettered(rt, upstream):
    await fetch(rt, b'{"kind": "tick", "service": "other"}',
                order(endpoint="ticker").model_copy(update={"endpoint": "nope"}),
                b'{"kind": "bogus"}', b"not json")
    reasons = rt.outbox.dead_letters()
    assert reasons[:3] == ["unknown service 'other'",
                           "unknown endpoint 'nope' of service 'svc'",
                           "unknown kind 'bogus' on the fetch topic"]
    assert reasons[3].startswith("not JSON")
    assert upstream.requests == []


async def test_the_tick_timer_wakes_only_services_with_a_call_to_make(rt, clock):
    ticks = timer(rt, "fetch_ticks").round
    await ticks()
    assert rt.outbox.sent(rt.topics.fetch) == []
    await fetch(rt, *(order(symbol=s) for s in "ABCDE"))  # 4/60: E waits for the window
    rt.outbox.clear()
    await ticks()
    assert rt.outbox.sent(rt.topics.fetch) == []  # no room in the limit: a tick is a record
    clock.advance(60.25)
    await ticks()
    assert rt.outbox.records(rt.topics.fetch) == [("svc", Tick(service="svc"))]


async def test_the_ticks_of_an_idle_worker_wait_for_an_order_then_run(rt, clock):
    """No timer wakes an idle worker: the ticks sleep on an event until an order is
    queued, then run every TICK_INTERVAL while one waits."""
    loop = asyncio.create_task(timer(rt, "fetch_ticks")())
    try:
        await asyncio.sleep(0)
        await fetch(rt, *(order(symbol=s) for s in "ABCDE"))  # 4/60: E waits for the window
        rt.outbox.clear()
        clock.advance(60.25)
        for _ in range(40):  # at most 2 s
            if rt.outbox.sent(rt.topics.fetch):
                break
            await asyncio.sleep(0.05)
        assert rt.outbox.records(rt.topics.fetch) == [("svc", Tick(service="svc"))]
    finally:
        loop.cancel()


async def test_a_queue_of_refreshes_not_yet_due_sleeps(rt):
    await fetch(rt, order(rate=1.0, fresh_until=START + 60, reason="planned"))
    rt.outbox.clear()
    await timer(rt, "fetch_ticks").round()
    assert rt.outbox.sent(rt.topics.fetch) == []

async def test_a_rebalance_hands_a_moved_services_queue_to_its_new_owner(rt, clock):
    """Only a service's owner drains it: a queue left behind when its fetch partition
    moves would never be called, and its ticks would run for ever. Faust's rebalances
    revoke every partition, then assign: a service whose partition comes back keeps its
    queue; one whose partition went elsewhere has its orders sent back to the fetch topic,
    keyed by service, with their rate as measured (not faded twice)."""
    await fetch(rt, *(order(symbol=s) for s in "ABCD"),  # 4/60: E waits for the window
                order(symbol="E", rate=1.0, requested_at=START - 30),
                order(symbol="E", rate=2.0, requested_at=START))  # measured again
    rt.outbox.clear()
    fetch_topic = rt.topics.fetch.get_topic_name()
    await rt.app.on_partitions_revoked.send({TP(fetch_topic, 0), TP("other", 0)})
    await rt.app.on_partitions_assigned.send({TP(fetch_topic, 0)})
    assert rt.outbox.sent(rt.topics.fetch) == []  # svc's partition came back
    assert [q.key for q in rt.backlog.queues["svc"].entries()] == ["svc/ticker/E"]
    await rt.app.on_partitions_revoked.send({TP(fetch_topic, 0)})
    await rt.app.on_partitions_assigned.send({TP(fetch_topic, 1)})
    handed = rt.outbox.records(rt.topics.fetch)
    assert [(key, o.symbol, o.rate, o.rate_at, o.requested_at) for key, o in handed] == [
        ("svc", "E", 2.0, START, START - 30)]
    assert not rt.backlog.queues.get("svc")
    rt.outbox.clear()
    clock.advance(60.25)
    await timer(rt, "fetch_ticks").round()
    assert rt.outbox.sent(rt.topics.fetch) == []  # no queue here: no ticks


@pytest.mark.parametrize(("waited", "quiet_called"), [("QUIET", True), ("NOBODY", False)])
async def test_a_key_with_a_reader_waiting_on_this_worker_is_called_first(rt, clock, waited,
                                                                          quiet_called):
    """The drain counts the readers waiting on this worker (``rt.waiters``): when the
    window frees 4 calls for 5 waiting keys, the quiet key a reader waits for is among
    them, and without its reader it is the one left out."""
    await fetch(rt, *(order(symbol=s, rate=0.1) for s in "ABCDEFGH"),  # 4/60: E-H wait
                order(symbol="QUIET", rate=0.01))
    rt.outbox.clear()
    clock.advance(60.25)
    with rt.waiters.watch(f"svc/ticker/{waited}"):
        await fetch(rt, Tick(service="svc"))
    called = [record.symbol for _, record in data(rt)]
    assert len(called) == 4 and ("QUIET" in called) is quiet_called


@pytest.mark.parametrize(("gives_up", "quiet_called"), [(30.0, True), (0.1, False)])
async def test_a_key_with_a_reader_waiting_on_its_owner_is_called_first(rt, clock, gives_up,
                                                                        quiet_called):
    """A reader may wait on the key's owner while another worker owns the service: its
    order says till when (``readers_until``). The quiet key is called first while its
    reader still waits when the call lands, and not once the reader has given up."""
    await fetch(rt, *(order(symbol=s, rate=0.1) for s in "ABCDEFGH"),  # 4/60: E-H wait
                order(symbol="QUIET", rate=0.01,
                      readers_until=START + 60.25 + gives_up))
    rt.outbox.clear()
    clock.advance(60.25)
    await fetch(rt, Tick(service="svc"))
    called = [record.symbol for _, record in data(rt)]
    assert len(called) == 4 and ("QUIET" in called) is quiet_called
