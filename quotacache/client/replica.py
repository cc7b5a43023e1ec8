"""A local replica of the data topics: reads with no network hop, same freshness rules.

``LocalReplica`` consumes ``<prefix>data.<service>.<endpoint>`` from the beginning (so it
starts with everything the topics hold) and keeps the newest record of each key in
memory; ``get`` classifies it exactly as the workers do (HIT inside the TTL, STALE up to
the service's ``max_staleness``, else MISS). ``subscribe`` yields new records as they
are published: the push side of the cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from quotacache.policy.freshness import CacheEntry
from quotacache.settings import Settings
from quotacache.streams.records import (
    BadMessage,
    DataRecord,
    cache_key,
    normalize_symbol,
    parse_message,
)
from quotacache.streams.topics import data_topic_name

#: Reads whose arguments are remembered resolved (cleared when full).
MAX_RESOLVED = 100_000


def data_topics(settings: Settings, services: Iterable[str] | None = None,
                endpoint: str | None = None) -> list[str]:
    wanted = set(services) if services else set(settings.services)
    return [data_topic_name(settings.topic_prefix, service, name)
            for service, config in settings.services.items() if service in wanted
            for name in config.endpoints if endpoint in (None, name)]


async def partitions_of(bootstrap: str, topics: list[str]) -> list[TopicPartition]:
    """Every partition of ``topics`` that exist. From the admin client: a consumer's own
    metadata holds only the topics it was given (real Kafka answers only those; the
    embedded broker answers every topic, which hid this)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(topics) if topics else []
    finally:
        await admin.close()
    return [TopicPartition(t["topic"], p["partition"]) for t in described
            if not t["error_code"] for p in t["partitions"]]


async def positioned_consumer(settings: Settings, topics: list[str], *,
                              from_beginning: bool) -> AIOKafkaConsumer:
    """A started consumer of ``topics`` whose start positions are already fixed, so
    nothing published after this returns can be missed."""
    bootstrap = settings.broker.bootstrap_servers()
    partitions = await partitions_of(bootstrap, topics)
    # A topic the embedded broker's worker re-created (a rotation) starts over: read it
    # from its start (its seeds are the cache, then what came since), skip nothing.
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign(partitions)
        if not partitions:
            pass  # no data topic yet: seeking nothing would fail
        elif from_beginning:
            await consumer.seek_to_beginning(*partitions)
        else:
            await consumer.seek_to_end(*partitions)
        for tp in partitions:
            await consumer.position(tp)
    except Exception:
        await consumer.stop()
        raise
    return consumer


#: Clock skew allowed between the workers and a subscriber (seconds).
SKEW = 5.0


async def records(consumer: AIOKafkaConsumer,
                  since: float | None = None) -> AsyncIterator[DataRecord]:
    """The valid data records a consumer receives (others are the workers' dead letters);
    with ``since``, only data fetched since then (a rotation re-publishes older data)."""
    async for message in consumer:
        with contextlib.suppress(BadMessage):
            record = parse_message(DataRecord, message.value)
            if since is None or record.fetched_at >= since - SKEW:
                yield record


async def subscribe(settings: Settings, service: str, endpoint: str | None = None, *,
                    from_beginning: bool = False) -> AsyncIterator[DataRecord]:
    """Yield every record published to the service's data topics (one endpoint, or all)."""
    since = None if from_beginning else time.time()
    consumer = await positioned_consumer(settings, data_topics(settings, [service], endpoint),
                                         from_beginning=from_beginning)
    try:
        async for record in records(consumer, since):
            yield record
    finally:
        await consumer.stop()


class LocalReplica:
    """The cache's entries, kept in this process from the data topics."""

    def __init__(self, settings: Settings, services: Iterable[str] | None = None,
                 clock: Callable[[], float] = time.time):
        self.settings = settings
        self.topics = data_topics(settings, services)
        self.clock = clock
        self.entries: dict[str, CacheEntry] = {}
        self._resolved: dict[tuple[str, str, str], tuple[str, float, float]] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._caught_up = asyncio.Event()

    async def start(self, timeout: float = 30.0) -> LocalReplica:
        """Start consuming; return once everything published before now has been read.

        Within ``timeout`` seconds in all, the connection to the broker included, else
        TimeoutError with the consumer stopped (a broker that takes connections but
        never answers held a start for aiokafka's own 40 s, and leaked its consumer)."""
        self._consumer = AIOKafkaConsumer(
            *self.topics, bootstrap_servers=self.settings.broker.bootstrap_servers(),
            group_id=None, auto_offset_reset="earliest")
        try:
            async with asyncio.timeout(timeout):
                await self._consumer.start()
                self._task = asyncio.create_task(self._run())
                await self._caught_up.wait()
        except BaseException:
            await self.stop()
            raise
        return self

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            batch = await self._consumer.getmany(timeout_ms=200)
            for messages in batch.values():
                for message in messages:
                    self._apply(message.value)
            if not batch:
                self._caught_up.set()

    def _apply(self, raw: bytes) -> None:
        try:
            record = parse_message(DataRecord, raw)
        except BadMessage:
            return  # the workers dead-letter it; a replica just skips it
        current = self.entries.get(record.key)
        if current is None or current.fetched_at <= record.fetched_at:
            self.entries[record.key] = CacheEntry(record.data, record.fetched_at, record.ttl)

    def get(self, service: str, endpoint: str, symbol: str = "*",
            max_age: float | None = None) -> dict[str, Any]:
        """The entry as ``GET /cache/...`` would answer it, from memory."""
        resolved = self._resolved.get((service, endpoint, symbol))
        if resolved is None:
            resolved = self._resolve(service, endpoint, symbol)
        key, max_staleness, spec_ttl = resolved
        entry = self.entries.get(key)
        now = self.clock()
        # classify(), inlined: this is the whole cost of a read here.
        if entry is not None:
            age = now - entry.fetched_at
            if age < 0.0:
                age = 0.0
            if age < max_staleness:
                ttl = entry.ttl
                fresh = age < (ttl if max_age is None or max_age > ttl else max_age)
                return {"status": "HIT" if fresh else "STALE", "data": entry.data,
                        "fetched_at": entry.fetched_at, "age": age, "ttl": ttl,
                        "fresh": fresh}
        return {"status": "MISS", "data": None, "age": None, "ttl": spec_ttl}

    def _resolve(self, service: str, endpoint: str, symbol: str) -> tuple[str, float, float]:
        """(cache key, max_staleness, endpoint TTL) of a read, remembered per argument."""
        config = self.settings.service(service)
        spec = config.endpoints[endpoint]
        canonical = normalize_symbol(symbol)
        if not spec.takes_symbol and not spec.fan_out:
            canonical = "*"
        resolved = (cache_key(service, endpoint, canonical), config.max_staleness, spec.ttl)
        if len(self._resolved) >= MAX_RESOLVED:
            self._resolved.clear()
        self._resolved[(service, endpoint, symbol)] = resolved
        return resolved

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    async def __aenter__(self) -> LocalReplica:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
