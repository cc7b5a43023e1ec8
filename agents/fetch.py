"""Upstream fetches under the rate limiter, on the partition that owns the service.

The agent decides each order with the limiter and counts an allowed call in every
limit's window before the call is sent (inside stream iteration, as Faust requires for
table writes). The HTTP call itself runs in a task, bounded per service by
``max_in_flight``, so a slow upstream does not stall the stream; its result goes to the
endpoint's data topic, or an outcome record explains why there is none. No call is ever
made without a decision from the limiter.
"""

from __future__ import annotations

import asyncio
import logging

import faust

from quotacache.errors import UpstreamError
from quotacache.runtime import Runtime
from quotacache.streams.records import (
    BadMessage,
    DataRecord,
    FetchOrder,
    FetchOutcome,
    cache_key,
    parse_message,
)

log = logging.getLogger(__name__)


def register(rt: Runtime) -> None:
    semaphores = {name: asyncio.Semaphore(cfg.max_in_flight)
                  for name, cfg in rt.settings.services.items()}
    tasks: set[asyncio.Task[None]] = set()

    @rt.app.agent(rt.topics.fetch, name="fetch")
    async def fetch(stream: faust.StreamT) -> None:
        async for event in stream.events():
            message = event.message
            try:
                order = parse_message(FetchOrder, event.value)
                rt.resolve_message(order.service, order.endpoint, order.symbol)
            except BadMessage as exc:
                await rt.topics.send_dead_letter(str(exc), event.value, topic=message.topic,
                                                 partition=message.partition,
                                                 offset=message.offset)
                continue
            semaphore = semaphores[order.service]
            await semaphore.acquire()
            try:
                decision = rt.limiter.try_acquire(order.service, order.endpoint, rt.clock())
            except Exception:
                semaphore.release()
                raise
            if not decision.allowed:
                semaphore.release()
                await blocked(rt, order, decision.blocked_by or "limit")
                continue
            task = asyncio.ensure_future(call_upstream(rt, order, semaphore))
            tasks.add(task)
            task.add_done_callback(tasks.discard)


async def blocked(rt: Runtime, order: FetchOrder, blocked_by: str) -> None:
    rt.stats.count("rate_limit_blocks", f"{order.service}/{order.endpoint}")
    await send_outcome(rt, order, "blocked", f"rate limit {blocked_by}")


async def send_outcome(rt: Runtime, order: FetchOrder, outcome: str, detail: str) -> None:
    key = cache_key(order.service, order.endpoint, order.symbol)
    record = FetchOutcome(service=order.service, endpoint=order.endpoint, symbol=order.symbol,
                          outcome=outcome, detail=detail, at=rt.clock())
    await rt.topics.send(rt.topics.outcomes, key, record)


async def call_upstream(rt: Runtime, order: FetchOrder, semaphore: asyncio.Semaphore) -> None:
    """Make the one call the limiter allowed; publish its data or why there is none."""
    endpoint_name = f"{order.service}/{order.endpoint}"
    rt.stats.count("upstream_calls", endpoint_name)
    try:
        try:
            answer = await rt.upstreams[order.service].fetch(order.endpoint, order.symbol,
                                                             rt.clock())
        finally:
            semaphore.release()
        spec = rt.settings.service(order.service).endpoints[order.endpoint]
        record = DataRecord(service=order.service, endpoint=order.endpoint, symbol=order.symbol,
                            data=answer.data, fetched_at=rt.clock(), ttl=spec.ttl)
        await rt.topics.send(rt.topics.data[(order.service, order.endpoint)], record.key, record)
    except UpstreamError as exc:
        rt.stats.count("errors", endpoint_name)
        log.warning("upstream call failed: %s", exc)
        await send_outcome(rt, order, "error", str(exc))
    except Exception as exc:
        rt.stats.count("errors", endpoint_name)
        log.exception("fetch of %s failed", endpoint_name)
        await send_outcome(rt, order, "error", type(exc).__name__)
