"""The hit path: a fresh entry this worker owns, answered from bytes encoded once.

The first HIT of a key on its owner (``reads.read_entry``) encodes the whole answer but
its age into ``rt.cache.hot``; later plain reads of the key (``GET /cache/s/e/SYMBOL``
with the canonical symbol, no query or only ``?wait=``) are answered by a middleware
behind the guard (readiness, request limit) before Faust's view, table routing, RocksDB
or any JSON work: two byte strings around the age, and the ``Age`` header. The answer, headers and
counters are those of the view's HIT. Anything else (not fresh any more, another
worker's key, a query, a symbol to normalise) goes the documented way through the view.

``CacheTable.put``/``delete`` drop a key's answer, and a rebalance drops them all, so
an answer is only ever served by the key's owner for the entry it was built from.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any, NamedTuple

from aiohttp import web as aioweb

from quotacache.policy.freshness import CacheEntry
from quotacache.runtime import Runtime
from quotacache.web.guard import Handler, Middleware
from quotacache.web.schemas import MAX_WAIT

PREFIX = "/cache/"
#: Encoded answers kept at most (the oldest goes first); each costs about its body.
MAX_HOT = 20_000
CONTENT_TYPE = "application/json; charset=utf-8"


class Hot(NamedTuple):
    until: float  # the entry is a HIT before this
    fetched_at: float
    head: bytes  # the body up to the age
    tail: bytes  # the body after it
    endpoint: str  # "service/endpoint", for the counters


def encode(service: str, endpoint: str, symbol: str, entry: CacheEntry,
           max_staleness: float) -> Hot:
    """The body of a HIT answer for ``entry`` (as ``read_entry`` writes it) around its age."""
    head = json.dumps({"service": service, "endpoint": endpoint, "symbol": symbol,
                       "status": "HIT", "fresh": True, "data": entry.data,
                       "fetched_at": entry.fetched_at})
    tail = json.dumps({"ttl": entry.ttl, "refresh_requested": False})
    return Hot(until=entry.fetched_at + min(entry.ttl, max_staleness),
               fetched_at=entry.fetched_at, head=(head[:-1] + ', "age": ').encode(),
               tail=(", " + tail[1:]).encode(), endpoint=f"{service}/{endpoint}")


def remember(rt: Runtime, key: str, hot: Hot) -> None:
    cache = rt.cache.hot
    if len(cache) >= MAX_HOT and key not in cache:
        del cache[next(iter(cache))]
    cache[key] = hot


def hit_middleware(runtime: Callable[[], Runtime]) -> Middleware:
    """Answers plain reads of hot keys; everything else goes on to ``handler``."""
    rt: Runtime | None = None

    @aioweb.middleware
    async def hits(request: aioweb.Request, handler: Handler) -> aioweb.StreamResponse:
        nonlocal rt
        path = request.path
        if (path.startswith(PREFIX) and request.method == "GET"
                and plain_query(request.query_string)):
            rt = rt or runtime()
            found = take(rt, path[len(PREFIX):])
            if found is not None:
                body, age = found
                return aioweb.Response(body=body, headers={
                    "Content-Type": CONTENT_TYPE, "X-Cache": "HIT", "Age": str(age)})
        return await handler(request)

    return hits


def plain_query(query: str) -> bool:
    """No query, or only a valid ``wait=SECONDS`` (which a HIT does not wait for)."""
    if not query:
        return True
    if not query.startswith("wait=") or "&" in query or not query.isascii():
        return False  # float() reads non-ASCII digits; the view's ReadQuery does not
    try:
        wait = float(query[5:])
    except ValueError:
        return False
    return 0 <= wait <= MAX_WAIT  # NaN fails too; a bad value gets the view's 400


def take(rt: Runtime, key: str,
         admit: Callable[[], bool] | None = None) -> tuple[bytes, int] | None:
    """The body of a HIT of ``key`` and its ``Age`` header, counted as a read and a hit;
    None when the key has no encoded answer, it is no longer a HIT, or ``admit`` (asked
    only for a HIT, so a request limit is charged once) says no."""
    hot = rt.cache.hot.get(key)
    if hot is None:
        return None
    now = rt.clock()
    if now >= hot.until or (admit is not None and not admit()):
        return None
    rt.demand.read(key, now)
    counts = rt.stats.by_endpoint[hot.endpoint]
    counts["hits"] += 1
    counts["calls_saved"] += 1
    age = max(0.0, now - hot.fetched_at)
    return b"".join((hot.head, repr(round(age, 3)).encode(), hot.tail)), math.floor(age)


def forget_on_rebalance(rt: Runtime) -> None:
    """A rebalance may move keys away (and recovery rewrites the store): drop every answer."""

    async def forget(*args: Any, **kwargs: Any) -> None:
        rt.cache.hot.clear()

    rt.app.on_partitions_revoked.connect(forget)
    rt.app.on_partitions_assigned.connect(forget)
