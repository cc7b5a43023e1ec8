"""The live dashboard: ``GET /`` (page), ``/dashboard.js``, ``/dashboard/snapshot`` (JSON)
and ``/dashboard/events`` (the snapshot pushed as Server-Sent Events every second).

A snapshot is the cluster's figures, whichever worker serves the page: stats merged from
every worker (``tables.cluster``) and each service's status from the worker that owns it.
One snapshot per interval is shared by every open dashboard of this worker, so more
viewers do not mean more work. The page and its charts are the project's own files in
``static`` beside this module: nothing is fetched from the internet.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aiohttp import web as aioweb
from faust import web

from quotacache.runtime import Runtime
from quotacache.web.cluster import collect
from quotacache.web.errors import HttpError
from quotacache.web.events import StreamSlots, start_event_stream
from quotacache.web.status import local_stats, service_status

STATIC = Path(__file__).parent / "static"
INTERVAL = 1.0
MAX_VIEWERS = 20


def static_file(name: str) -> bytes:
    return (STATIC / name).read_bytes()


class Snapshots:
    """The latest cluster snapshot, rebuilt at most once per ``interval``."""

    def __init__(self, rt: Runtime, interval: float = INTERVAL):
        self.rt = rt
        self.interval = interval
        self.latest: dict[str, Any] | None = None
        self.built_at = float("-inf")
        self.lock = asyncio.Lock()

    async def get(self) -> dict[str, Any]:
        async with self.lock:
            loop = asyncio.get_running_loop()
            if self.latest is None or loop.time() - self.built_at >= self.interval * 0.9:
                self.latest = await self.build()
                self.built_at = loop.time()
            return self.latest

    async def build(self) -> dict[str, Any]:
        rt = self.rt
        stats = await collect(rt, local_stats(rt))
        names = list(rt.settings.services)
        statuses = await asyncio.gather(*(service_status(rt, name) for name in names))
        return {"time": rt.clock(), "stats": stats,
                "services": dict(zip(names, statuses, strict=True))}


def register(rt: Runtime) -> None:
    app = rt.app
    snapshots = Snapshots(rt)
    viewers = StreamSlots(MAX_VIEWERS)

    @app.page("/")
    class DashboardPage(web.View):
        async def get(self, request: web.Request) -> web.Response:
            return self.html(static_file("dashboard.html").decode())

    @app.page("/dashboard.js")
    class DashboardScript(web.View):
        async def get(self, request: web.Request) -> web.Response:
            response = self.bytes(static_file("dashboard.js"), content_type="text/plain")
            response.headers["Content-Type"] = "text/javascript; charset=utf-8"
            return response

    @app.page("/dashboard/snapshot")
    class SnapshotView(web.View):
        async def get(self, request: web.Request) -> web.Response:
            return self.json(await snapshots.get())

    @app.page("/dashboard/events")
    class SnapshotEvents(web.View):
        async def get(self, request: web.Request) -> Any:
            with viewers.taken() as free:
                if not free:
                    raise HttpError(503, f"at most {MAX_VIEWERS} dashboards per worker")
                return await push(request)

    async def push(request: Any) -> aioweb.StreamResponse:
        response = await start_event_stream(request)
        try:
            while True:
                snapshot = await snapshots.get()
                await response.write(f"event: snapshot\ndata: {json.dumps(snapshot)}\n\n"
                                     .encode())
                await asyncio.sleep(snapshots.interval)
        except ConnectionResetError:
            pass  # the page was closed
        return response
