"""``GET /events``: new data-topic records pushed to the client as Server-Sent Events.

The seed's "real-time cache invalidation / push updates". Each connection has its own
consumer positioned at the end of the chosen data topics; a first ``: ready`` comment
says it is listening. Keys can be narrowed with ``symbols``; a comment every 15 s keeps
proxies from closing an idle stream. Connections are capped per worker, and end when
the worker stops (the web server's stop waits for every open answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from aiohttp import web as aioweb
from faust import web

from quotacache.client.replica import data_topics, positioned_consumer, records
from quotacache.runtime import Runtime
from quotacache.streams.records import normalize_symbol
from quotacache.web.errors import HttpError

MAX_STREAMS = 50
KEEPALIVE = 15.0
#: How often an idle stream looks whether its client is still there (seconds).
GONE_LOOK = 1.0


class StreamSlots:
    """At most ``limit`` open streams of one kind on this worker."""

    def __init__(self, limit: int):
        self.limit = limit
        self.open = 0

    @contextlib.contextmanager
    def taken(self) -> Iterator[bool]:
        """Yield whether a slot was free; it is held until the block ends."""
        if self.open >= self.limit:
            yield False
            return
        self.open += 1
        try:
            yield True
        finally:
            self.open -= 1


async def start_event_stream(request: Any) -> aioweb.StreamResponse:
    """A prepared ``text/event-stream`` answer: the one way every stream starts."""
    response = aioweb.StreamResponse(headers={"Content-Type": "text/event-stream",
                                              "Cache-Control": "no-cache"})
    await response.prepare(request)
    return response


async def with_keepalive(source: AsyncIterator[Any], stop: asyncio.Event, every: float,
                         gone: Callable[[], bool] = lambda: False,
                         look: float = GONE_LOOK) -> AsyncIterator[Any]:
    """``source``'s items, and None after each ``every`` seconds without one; ends when
    ``stop`` is set, ``source`` ends, or ``gone()`` (looked at every ``look`` seconds:
    a client that left frees its stream's slot then, not at the next keepalive). A
    pending item is never cancelled for a keepalive: that would end ``source`` (an
    async generator cancelled is closed)."""
    loop = asyncio.get_running_loop()
    stopped = asyncio.ensure_future(stop.wait())
    pending: asyncio.Future[Any] | None = None
    last = loop.time()
    try:
        while not stop.is_set() and not gone():
            if pending is None:
                pending = asyncio.ensure_future(anext(source))
            await asyncio.wait((pending, stopped), timeout=min(look, every),
                               return_when=asyncio.FIRST_COMPLETED)
            if stop.is_set() or gone():
                return
            if not pending.done():
                if loop.time() - last >= every:
                    last = loop.time()
                    yield None
                continue
            try:
                item = pending.result()
            except StopAsyncIteration:
                return
            pending = None
            last = loop.time()
            yield item
    finally:
        stopped.cancel()
        if pending is not None:
            pending.cancel()


def register(rt: Runtime) -> None:
    slots = StreamSlots(MAX_STREAMS)

    @rt.app.page("/events")
    class EventsView(web.View):
        async def get(self, request: web.Request) -> Any:
            service = request.query.get("service", "")
            endpoint = request.query.get("endpoint") or None
            if service not in rt.settings.services:
                raise HttpError(404, f"unknown service {service!r}")
            if endpoint is not None and endpoint not in rt.settings.service(service).endpoints:
                raise HttpError(404, f"unknown endpoint {endpoint!r} of {service!r}")
            try:
                symbols = {normalize_symbol(s) for s in
                           request.query.get("symbols", "").split(",") if s}
            except ValueError as exc:
                raise HttpError(400, str(exc)) from None
            with slots.taken() as free:
                if not free:
                    raise HttpError(503, f"at most {MAX_STREAMS} event streams per worker")
                return await stream(request, service, endpoint, symbols)

    async def stream(request: Any, service: str, endpoint: str | None,
                     symbols: set[str]) -> aioweb.StreamResponse:
        response = await start_event_stream(request)
        since = rt.clock()
        consumer = await positioned_consumer(rt.settings,
                                             data_topics(rt.settings, [service], endpoint),
                                             from_beginning=False)
        updates = with_keepalive(records(consumer, since), rt.stopping, KEEPALIVE,
                                 gone=lambda: request.transport is None
                                 or request.transport.is_closing())
        try:
            await response.write(b": ready\n\n")
            async with contextlib.aclosing(updates):  # its pending read ends with it
                async for record in updates:
                    if record is None:
                        await response.write(b": keepalive\n\n")
                        continue
                    if symbols and record.symbol not in symbols:
                        continue
                    payload = json.dumps({"key": record.key, **record.model_dump()})
                    await response.write(f"event: data\ndata: {payload}\n\n".encode())
        except ConnectionResetError:
            pass  # the client went away
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()
        return response
