"""The materializer: data records into the cache table; outcomes close in-flight fetches."""

import json

import pytest

from quotacache.policy.freshness import CacheEntry
from quotacache.streams.records import DataRecord, FetchOrder, FetchOutcome

from .harness import START, running


def record(symbol="BTC", fetched_at=START, data=None, endpoint="ticker"):
    return DataRecord(service="svc", endpoint=endpoint, symbol=symbol,
                      data={"price": 1} if data is None else data,
                      fetched_at=fetched_at, ttl=60)


async def materialize(rt, *records, topic=None, key=None):
    async with running(rt, "materialize") as agent:
        for rec in records:
            await agent.put(rec, key=rec.key if key is None else key,
                            topic=topic or rt.topics.data[("svc", rec.endpoint)])


async def test_a_data_record_becomes_the_cache_entry_of_its_key(rt):
    await materialize(rt, record(data={"price": 42}))
    assert rt.cache.get("svc/ticker/BTC") == CacheEntry({"price": 42}, START, 60)


async def test_a_newer_record_replaces_the_entry(rt):
    await materialize(rt, record(data={"price": 1}), record(fetched_at=START + 5,
                                                            data={"price": 2}))
    assert rt.cache.get("svc/ticker/BTC").data == {"price": 2}


async def test_an_older_record_arriving_late_does_not_replace_a_newer_entry(rt):
    await materialize(rt, record(fetched_at=START + 5, data={"price": 2}),
                      record(data={"price": 1}))
    assert rt.cache.get("svc/ticker/BTC") == CacheEntry({"price": 2}, START + 5, 60)


async def test_a_record_lands_and_releases_the_keys_in_flight_mark_and_wakes_readers(rt):
    rt.inflight.claim("svc/ticker/BTC", START)
    with rt.waiters.watch("svc/ticker/BTC") as landed:
        await materialize(rt, record())
        assert landed.is_set()
    assert not rt.inflight.active("svc/ticker/BTC", START)


async def test_a_fetch_outcome_releases_the_key_and_wakes_readers_without_an_entry(rt):
    rt.inflight.claim("svc/ticker/BTC", START)
    outcome = FetchOutcome(service="svc", endpoint="ticker", symbol="BTC", outcome="error",
                           detail="HTTP 500", at=START)
    with rt.waiters.watch("svc/ticker/BTC") as ended:
        async with running(rt, "materialize") as agent:
            await agent.put(outcome, key="svc/ticker/BTC", topic=rt.topics.outcomes)
        assert ended.is_set()
    assert not rt.inflight.active("svc/ticker/BTC", START)
    assert rt.cache.get("svc/ticker/BTC") is None


async def test_a_record_on_another_endpoints_topic_is_dead_lettered(rt):
    await materialize(rt, record(), topic=rt.topics.data[("svc", "ratio")])
    assert rt.outbox.dead_letters() == ["record for svc/ticker/BTC on the wrong data topic"]
    assert rt.cache.get("svc/ticker/BTC") is None


async def test_a_record_not_keyed_by_its_cache_key_is_dead_lettered(rt):
    await materialize(rt, record(), key="svc/ticker/ETH")
    assert rt.outbox.dead_letters() == [
        f"record for svc/ticker/BTC must be keyed by {json.dumps('svc/ticker/BTC')}"]
    assert rt.cache.get("svc/ticker/BTC") is None


async def test_a_record_that_does_not_validate_is_dead_lettered_naming_the_field(rt):
    async with running(rt, "materialize") as agent:
        await agent.put(b'{"service": "svc", "endpoint": "ticker", "symbol": "BTC"}',
                        key="svc/ticker/BTC", topic=rt.topics.data[("svc", "ticker")])
    reasons = rt.outbox.dead_letters()
    assert len(reasons) == 1 and "fetched_at: Field required" in reasons[0]
    assert rt.stats.by_endpoint["topic/data.svc.ticker"]["dead_letters"] == 1


async def test_a_record_with_a_bad_symbol_is_dead_lettered_not_stored(rt):
    bad = record().model_copy(update={"symbol": "../x"})
    await materialize(rt, bad)
    [reason] = rt.outbox.dead_letters()
    assert "symbol" in reason
    assert rt.cache.get("svc/ticker/../x") is None


# -- planned refreshes -----------------------------------------------------------------

def read_often(rt, key, times=30):
    for i in range(times):
        rt.demand.read(key, START - times + i)


def planned(rt):
    return rt.outbox.records(rt.topics.fetch, FetchOrder)


async def test_a_key_read_often_is_planned_to_be_refreshed_as_its_new_data_expires(rt):
    read_often(rt, "svc/ticker/BTC")
    await materialize(rt, record(fetched_at=START - 2))
    [(key, order)] = planned(rt)
    assert key == "svc" and order.key == "svc/ticker/BTC"
    assert (order.reason, order.fresh_until, order.requested_at) == ("planned", START + 58, START)
    assert order.priority.value == "critical"
    assert order.rate == pytest.approx(rt.demand.rate("svc/ticker/BTC", START))


async def test_a_key_nobody_reads_is_not_planned(rt):
    await materialize(rt, record())
    assert planned(rt) == []


async def test_the_keys_a_list_answer_fills_are_not_planned(rt):
    read_often(rt, "svc/coinlist/BTC")
    read_often(rt, "svc/coinlist/*")
    await materialize(rt, record("BTC", endpoint="coinlist"), record("*", endpoint="coinlist"))
    assert planned(rt) == []


async def test_a_record_older_than_the_entry_plans_nothing(rt):
    await materialize(rt, record(fetched_at=START + 5))
    read_often(rt, "svc/ticker/BTC")
    await materialize(rt, record(fetched_at=START))
    assert planned(rt) == []
