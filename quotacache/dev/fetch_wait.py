"""Adaptive long-poll of the worker's consumer against the embedded broker.

Tansu does not answer a fetch when data arrives: it rescans the partitions of a waiting
fetch at about W/2, 3W/4, ... of the fetch's wait W and answers at the first rescan
that finds data, so a record produced while a fetch waits is delivered after a delay
uniform in [0, W/2] (measured by ``bench/idle/fetch_wait_probe.py``). Every rescan
reads every partition the fetch names, so the broker's CPU grows with partitions x
fetch rate, and an idle worker polling every 50 ms costs about a fifth of a core.

So the wait adapts: ``broker.fetch_wait`` (350 ms) while records flow and after
anything this worker produced; ``BUSY_WAIT_MS`` (50 ms) throughout a rebalance or
recovery (a long poll holds up the ListOffsets and OffsetFetch requests queued behind it
on the same connection); ``broker.idle_fetch_wait`` (2 s) once nothing was fetched or
produced for ``broker.idle_after`` (2 s). The price: a topic hop waits up to 175 ms while
records flow (a miss's first answer crosses two: fetch, data), and the first
hop after a quiet spell up to half the idle wait (1 s). The bench's zipf trace (worker
and broker, single runs, `python -m bench lean`): 50 ms 14.7 CPU-s; 200 ms 6.7-7.1;
300 ms 6.5; 350 ms 5.5-5.8; 400 ms 5.6, each with the same fresh share (0.86-0.87):
fewer fetches, each answered with more records, and fewer rescans in the broker.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from quotacache.settings import BrokerConfig

#: The long-poll during a rebalance or recovery.
BUSY_WAIT_MS = 50


class Activity:
    """When this worker last fetched records or produced one (both threads touch it)."""

    last = 0.0
    short_ms = 200
    idle_ms = 0
    idle_after = 2.0
    #: True while the worker rebalances or recovers (the short wait then).
    busy: Callable[[], bool] = staticmethod(lambda: True)

    @classmethod
    def touch(cls) -> None:
        cls.last = time.monotonic()

    @classmethod
    def fetch_wait_ms(cls) -> int:
        if cls.busy():
            cls.touch()
            return min(BUSY_WAIT_MS, cls.short_ms)
        if cls.idle_ms and time.monotonic() - cls.last > cls.idle_after:
            return cls.idle_ms
        return cls.short_ms


def _adaptive_fetcher_class() -> type:
    from aiokafka.consumer.fetcher import Fetcher

    class AdaptiveFetcher(Fetcher):
        """Asks ``Activity`` for the wait of each fetch request it builds."""

        @property
        def _fetch_max_wait_ms(self) -> int:  # type: ignore[override]
            return Activity.fetch_wait_ms()

        @_fetch_max_wait_ms.setter
        def _fetch_max_wait_ms(self, value: int) -> None:
            pass

        async def _proc_fetch_request(self, assignment: Any, node_id: Any,
                                      request: Any) -> bool:
            got = await super()._proc_fetch_request(assignment, node_id, request)
            if got:
                Activity.touch()
            return bool(got)

    return AdaptiveFetcher


def install(config: BrokerConfig, app: Any) -> None:
    """Make the worker consumers of ``app`` long-poll adaptively (embedded broker only)."""
    from aiokafka import AIOKafkaProducer
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    Activity.short_ms = max(1, round(config.fetch_wait * 1000))
    Activity.idle_ms = round(config.idle_fetch_wait * 1000)
    Activity.idle_after = config.idle_after
    Activity.busy = staticmethod(  # type: ignore[assignment]
        lambda: bool(app.rebalancing) or not app.tables.recovery.completed.is_set())
    Activity.touch()
    if getattr(AIOKafkaConsumerThread, "_quotacache_fetch_wait", False):
        return
    fetcher_class = _adaptive_fetcher_class()
    create_consumer = AIOKafkaConsumerThread._create_worker_consumer

    def _create_worker_consumer(self, transport):  # type: ignore[no-untyped-def]
        consumer = create_consumer(self, transport)
        consumer._fetch_max_wait_ms = min(BUSY_WAIT_MS, Activity.short_ms)
        start = consumer.start

        async def start_adaptive() -> None:
            await start()
            if Activity.idle_ms:
                consumer._fetcher.__class__ = fetcher_class

        consumer.start = start_adaptive
        return consumer

    send = AIOKafkaProducer.send

    async def send_and_touch(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        Activity.touch()
        return await send(self, *args, **kwargs)

    AIOKafkaProducer.send = send_and_touch
    AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer
    AIOKafkaConsumerThread._quotacache_fetch_wait = True
