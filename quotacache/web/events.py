"""``GET /events``: new data-topic records pushed to the client as Server-Sent Events.

The seed's "real-time cache invalidation / push updates". Each connection has its own
consumer positioned at the end of the chosen data topics; a first ``: ready`` comment
says it is listening. Keys can be narrowed with ``symbols``; a comment every 15 s keeps
proxies from closing an idle stream. Connections are capped per worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from typing import Any

from aiohttp import web as aioweb
from faust import web

from quotacache.client.replica import data_topics, positioned_consumer, records
from quotacache.runtime import Runtime
from quotacache.streams.records import normalize_symbol
from quotacache.web.errors import HttpError

MAX_STREAMS = 50
KEEPALIVE = 15.0


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
        try:
            await response.write(b": ready\n\n")
            updates = records(consumer, since).__aiter__()
            while True:
                try:
                    record = await asyncio.wait_for(updates.__anext__(), KEEPALIVE)
                except TimeoutError:
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
