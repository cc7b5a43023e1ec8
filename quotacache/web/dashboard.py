"""The live dashboard: ``GET /`` (page), ``/dashboard.js``, ``/dashboard/snapshot`` (JSON)
and ``/dashboard/events`` (the snapshot pushed as Server-Sent Events every second).

A snapshot is the cluster's figures, whichever worker serves the page: stats merged from
every worker (``web.cluster``) and each service's status from the worker that owns it.
One snapshot per interval is shared by every open dashboard of this worker, so more
viewers do not mean more work. These figures are worked out here, once per snapshot, so
every viewer sees the same numbers:

* ``budget``: per service, its binding limit (the service-wide limit with the largest
  share used, ties to the one with the fewest calls left): calls in the window /
  allowance, and the busiest endpoint limit beside it;
* ``fresh``: the fresh share of reads (hits / reads, where reads = hits + misses + stale
  answers) over the last ``FRESH_WINDOW`` seconds, and ``calls``: the upstream calls of
  the last ``CALLS_WINDOW`` seconds, per service and overall, from the differences
  between this worker's snapshots (``seconds``: the span they cover). With no earlier
  snapshot to compare with (the first look, or the set of answering workers changed)
  they count since the counters started, and ``seconds`` is null.

The page embeds the current snapshot (``<script type="application/json" id="snapshot">``)
so its first paint shows the figures before the event stream connects. The page and its
charts are the project's own files in ``static`` beside this module: nothing is fetched
from the internet.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from pathlib import Path
from typing import Any

from aiohttp import web as aioweb
from faust import web

from quotacache.runtime import Runtime
from quotacache.web.cluster import collect
from quotacache.web.errors import HttpError
from quotacache.web.events import StreamSlots, start_event_stream
from quotacache.web.status import local_stats, service_status

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
INTERVAL = 1.0
MAX_VIEWERS = 20
#: Seconds of reads the live fresh share covers, and of upstream calls the call counts.
FRESH_WINDOW = 10.0
CALLS_WINDOW = 60.0
#: The page's slot for the embedded snapshot (``null`` in the file: nothing embedded).
SNAPSHOT_SLOT = '<script type="application/json" id="snapshot">{}</script>'


def static_file(name: str) -> bytes:
    return (STATIC / name).read_bytes()


def embed_json(value: Any) -> str:
    """JSON that is safe inside a ``<script>`` element: no ``<``, ``>`` or ``&`` at all (so
    no ``</script>`` and no ``<!--``), each written as its ``\\u`` escape, which JSON.parse
    reads back as the same character; non-ASCII is escaped too."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_page(html: str, snapshot: dict[str, Any]) -> str:
    """The dashboard page with ``snapshot`` in its slot."""
    empty = SNAPSHOT_SLOT.format("null")
    if html.count(empty) != 1:
        raise ValueError("dashboard.html must hold the snapshot slot exactly once")
    return html.replace(empty, SNAPSHOT_SLOT.format(embed_json(snapshot)))


Counts = tuple[int, int, int]  # hits, reads (hits + misses + stale answers), upstream calls


def counts_of(stats: dict[str, Any], services: list[str]
              ) -> tuple[Counts, dict[str, Counts]]:
    """The cluster's counts overall and per service (summed over its endpoints)."""
    per_service = dict.fromkeys(services, (0, 0, 0))
    for endpoint, c in (stats.get("endpoints") or {}).items():
        service = endpoint.split("/", 1)[0]
        if service in per_service:
            hits, reads, calls = per_service[service]
            per_service[service] = (hits + c["hits"],
                                    reads + c["hits"] + c["misses"] + c["stale_served"],
                                    calls + c["upstream_calls"])
    overall = (int(stats.get("hits", 0)), int(stats.get("reads", 0)),
               int(stats.get("upstream_calls", 0)))
    return overall, per_service


def fresh_share(now: Counts, before: Counts) -> dict[str, Any]:
    """Hits, reads and the fresh share between two counts. Counters that went down (a
    worker's figures missing, or a restart) give no share rather than a wrong one."""
    hits, reads = now[0] - before[0], now[1] - before[1]
    valid = reads > 0 and 0 <= hits <= reads
    return {"hits": max(0, hits), "reads": max(0, reads),
            "share": round(hits / reads, 4) if valid else None}


def calls_between(now: Counts, before: Counts) -> int | None:
    calls = now[2] - before[2]
    return calls if calls >= 0 else None


class Deltas:
    """What changed between this worker's snapshots: the fresh share of reads over the
    last ``fresh_window`` seconds and the upstream calls over the last ``calls_window``."""

    def __init__(self, fresh_window: float = FRESH_WINDOW,
                 calls_window: float = CALLS_WINDOW):
        self.fresh_window = fresh_window
        self.calls_window = calls_window
        #: (time, answering workers, overall counts, counts per service), oldest first;
        #: one per snapshot, so about ``calls_window / INTERVAL`` of them.
        self.samples: deque[tuple[float, frozenset[str], Counts, dict[str, Counts]]] = \
            deque(maxlen=1000)

    def baseline(self, time: float, window: float
                 ) -> tuple[float | None, Counts, dict[str, Counts]]:
        """The oldest sample inside the window, else the newest one (the dashboard was not
        looked at for a while: the figures cover the whole gap), else zero counts (the
        first look: the figures since the counters started, ``seconds`` None)."""
        if not self.samples:
            return None, (0, 0, 0), {}
        start = time - window - INTERVAL / 2  # snapshots come about one interval apart
        chosen = next((s for s in self.samples if s[0] >= start), self.samples[-1])
        return round(time - chosen[0], 1), chosen[2], chosen[3]

    def measure(self, time: float, stats: dict[str, Any], services: list[str]
                ) -> dict[str, Any]:
        workers = frozenset(url for url, state in (stats.get("workers") or {}).items()
                            if state == "ok")
        overall, per_service = counts_of(stats, services)
        if self.samples and self.samples[-1][1] != workers:
            self.samples.clear()  # sums over other workers: not comparable
        while len(self.samples) > 1 and self.samples[0][0] < time - self.calls_window - INTERVAL:
            self.samples.popleft()
        seconds, overall_before, before = self.baseline(time, self.fresh_window)
        fresh = {"seconds": seconds, "overall": fresh_share(overall, overall_before),
                 "services": {name: fresh_share(per_service[name], before.get(name, (0, 0, 0)))
                              for name in services}}
        seconds, overall_before, before = self.baseline(time, self.calls_window)
        calls = {"seconds": seconds, "overall": calls_between(overall, overall_before),
                 "services": {name: calls_between(per_service[name],
                                                  before.get(name, (0, 0, 0)))
                              for name in services}}
        self.samples.append((time, workers, overall, per_service))
        return {"fresh": fresh, "calls": calls}


def budget(status: dict[str, Any], service: str) -> dict[str, Any] | None:
    """The service's binding limit, its share used, and its busiest endpoint limit."""
    rows = [r for r in status.get("limits") or () if r.get("allowance")]

    def key(row: dict[str, Any]) -> tuple[float, int]:
        return row["used"] / row["allowance"], -row["left"]

    own = [r for r in rows if r["scope"] == service]
    if not own:
        return None
    binding = max(own, key=key)
    endpoints = [r for r in rows if r["scope"] != service and r["used"]]
    busiest = max(endpoints, key=key) if endpoints else None
    return {**binding, "seconds": float(binding["limit"].split("/")[1]),
            "share": round(key(binding)[0], 3),
            "endpoint": {**busiest, "share": round(key(busiest)[0], 3)} if busiest else None}


class Snapshots:
    """The latest cluster snapshot, rebuilt at most once per ``interval``."""

    def __init__(self, rt: Runtime, interval: float = INTERVAL):
        self.rt = rt
        self.interval = interval
        self.latest: dict[str, Any] | None = None
        self.built_at = float("-inf")
        self.lock = asyncio.Lock()
        self.deltas = Deltas()

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
        now = rt.clock()
        return {"time": now, "stats": stats,
                "services": dict(zip(names, statuses, strict=True)),
                "budget": {name: budget(status, name)
                           for name, status in zip(names, statuses, strict=True)},
                **self.deltas.measure(now, stats, names)}


def register(rt: Runtime) -> None:
    app = rt.app
    snapshots = Snapshots(rt)
    viewers = StreamSlots(MAX_VIEWERS)

    @app.page("/")
    class DashboardPage(web.View):
        async def get(self, request: web.Request) -> web.Response:
            html = static_file("dashboard.html").decode()
            try:
                page = render_page(html, await snapshots.get())
            except Exception:  # the page still works: its figures come with the stream
                log.exception("dashboard: no snapshot to embed in the page")
                page = html
            response = self.html(page)
            response.headers["Cache-Control"] = "no-store"  # the figures of this moment
            return response

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
            while not rt.stopping.is_set():
                snapshot = await snapshots.get()
                await response.write(f"event: snapshot\ndata: {json.dumps(snapshot)}\n\n"
                                     .encode())
                with contextlib.suppress(TimeoutError):  # the worker stops: the page ends
                    await asyncio.wait_for(rt.stopping.wait(), snapshots.interval)
        except ConnectionResetError:
            pass  # the page was closed
        return response
