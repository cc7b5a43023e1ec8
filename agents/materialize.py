"""Materialize the data topics into the cache table, and close in-flight fetches.

Data topics are keyed by cache key, like ``internal.requests``; partition P of both
belongs to one worker, so the entry lands where admission and reads look for it.
A data record that does not validate (the topics are public) is dead-lettered.
"""

from __future__ import annotations

import json

import faust

from quotacache.policy.freshness import CacheEntry
from quotacache.runtime import Runtime
from quotacache.streams.records import (
    BadMessage,
    DataRecord,
    FetchOrder,
    FetchOutcome,
    parse_message,
)


def register(rt: Runtime) -> None:
    topics = rt.topics
    outcomes = topics.outcomes.get_topic_name()

    @rt.app.agent(topics.raw(*topics.data.values(), topics.outcomes), name="materialize")
    async def materialize(stream: faust.StreamT) -> None:
        async for event in stream.events():
            message = event.message
            try:
                if message.topic == outcomes:
                    outcome = parse_message(FetchOutcome, event.value)
                    _, key = rt.resolve_message(outcome.service, outcome.endpoint,
                                                outcome.symbol)
                    rt.inflight.release(key)
                    rt.waiters.wake(key)
                    continue
                record = parse_message(DataRecord, event.value)
                _, key = rt.resolve_message(record.service, record.endpoint, record.symbol)
                if message.topic != topics.data[(record.service, record.endpoint)].get_topic_name():
                    raise BadMessage(f"record for {key} on the wrong data topic")
                if event.key != json.dumps(key).encode():
                    raise BadMessage(f"record for {key} must be keyed by {json.dumps(key)}")
            except BadMessage as exc:
                await rt.dead_letter(event, str(exc))
                continue
            current = rt.cache.get(key)
            if current is not None and current.fetched_at == record.fetched_at:
                continue  # a replay of what the table holds (a rotation's seed): no write
            if current is None or current.fetched_at < record.fetched_at:
                rt.cache.put(key, CacheEntry(record.data, record.fetched_at, record.ttl))
                await plan_refresh(rt, record, key)
            rt.inflight.release(key, record.fetched_at)
            rt.waiters.wake(key)


async def plan_refresh(rt: Runtime, record: DataRecord, key: str) -> None:
    """Tell the service's owner when this key's new data expires and how often it is read,
    so a key read often is renewed as it expires, whether or not a read comes then. A key
    nobody reads is not planned. List endpoints fill many keys from one call and are
    refreshed on request only."""
    spec = rt.settings.service(record.service).endpoints[record.endpoint]
    if spec.fan_out:
        return
    now = rt.clock()
    if not rt.demand.worth_renewing(key, now, record.ttl):
        return
    rate = rt.demand.rate(key, now)
    order = FetchOrder(service=record.service, endpoint=record.endpoint, symbol=record.symbol,
                       priority=spec.priority, reason="planned", requested_at=now, rate=rate,
                       fresh_until=record.fetched_at + record.ttl)
    await rt.topics.send(rt.topics.fetch, record.service, order)
