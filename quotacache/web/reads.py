"""Cache reads over HTTP (Faust web), answered by the worker that owns the key.

``GET /cache/{service}/{endpoint}/{symbol}`` answers HIT (fresh), STALE (past its TTL,
served with its age) or MISS (202, a refresh has been requested); a stale or missing
entry triggers a refresh request. Unknown names and invalid symbols get a 4xx JSON error.
No answer depends on the upstream: reads never wait on it, so they never fail with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from typing import Any

import aiohttp
from faust import web

from quotacache.admission import admit_request
from quotacache.policy.freshness import Freshness, classify
from quotacache.runtime import Runtime
from quotacache.streams.records import RefreshRequest
from quotacache.web.cluster import own_url
from quotacache.web.errors import HttpError
from quotacache.web.guard import authorized, peer_headers
from quotacache.web.hits import encode, forget_on_rebalance, remember
from quotacache.web.schemas import ReadQuery, parse_query
from quotacache.web.status import not_ready

log = logging.getLogger(__name__)

def register(rt: Runtime) -> None:
    app = rt.app
    forget_on_rebalance(rt)

    @app.page("/cache/{service}/{endpoint}/{symbol}")
    class CacheView(web.View):
        async def get(self, request: web.Request, service: str, endpoint: str,
                      symbol: str) -> web.Response:
            symbol, key = rt.resolve(service, endpoint, symbol)
            query = parse_query(request, ReadQuery)
            wait, max_age = query.wait, query.max_age
            try:
                routed = await forward_to_owner(self, rt, request, key, wait)
            except Exception as exc:  # owner down or rebalancing: answer from what we have
                log.warning("owner of %s unreachable (%s): answering locally", key,
                            type(exc).__name__)
                if rt.cache.get(key) is None:  # a MISS would say there is no data: unknown
                    raise HttpError(503, f"the owner of {key} cannot answer now and this "
                                    "worker holds no copy of it",
                                    {"Retry-After": str(OWNER_RETRY_AFTER)}) from None
                routed = None
            if routed is not None:
                return routed
            # A max_age below the TTL forces a call, as POST /refresh with force does:
            # with a token configured, only a reader that has it may do that.
            may_force = authorized(rt.settings.web, request.headers.get("Authorization"))
            return await read_entry(self, rt, service, endpoint, symbol, key, wait, max_age,
                                    may_force=may_force, owned=owned_here(rt, key))


class OwnerUnavailable(Exception):
    """The key's owner refused the forwarded read for now (429 or 5xx)."""


ROUTED_HEADER = "X-Quotacache-Routed"
#: Retry-After (seconds) of a read whose owner is away and which this worker cannot
#: answer: a takeover takes a few seconds.
OWNER_RETRY_AFTER = 1
#: Seconds a read waits to hand its refresh request to the producer (microseconds
#: normally; unbounded while the broker is down and the producer's buffer is full).
REQUEST_TIMEOUT = 0.5
#: Headers of the owner's answer that the reader must see, whichever worker it asked.
FORWARDED_HEADERS = ("X-Cache", "Age")


async def forward_to_owner(view: web.View, rt: Runtime, request: web.Request, key: str,
                           wait: float) -> web.Response | None:
    """The owner's answer to this read, with its status and cache headers; None when this
    worker owns the key, owners are not assigned yet, or the read was forwarded already
    (two workers that disagree during a rebalance never bounce a read between them).
    Raises when the owner cannot be reached or refuses for now (OwnerUnavailable)."""
    if request.headers.get(ROUTED_HEADER):
        return None
    try:
        owner = rt.app.router.key_store(rt.cache.name, key)
    except KeyError:
        return None
    if str(owner).rstrip("/") == own_url(rt):
        return None
    url = request.url.with_host(owner.host).with_port(owner.port)
    timeout = aiohttp.ClientTimeout(total=wait + 10.0)
    headers = {ROUTED_HEADER: "1", **peer_headers(rt.settings.web)}
    if "Authorization" in request.headers:  # the owner judges the reader's own rights
        headers["Authorization"] = request.headers["Authorization"]
    async with rt.app.http_client.get(url, headers=headers, timeout=timeout) as response:
        if response.status == 429 or response.status >= 500:  # this worker's copy will do
            raise OwnerUnavailable(f"the owner answered {response.status}")
        body = await response.read()
        kept = {h: response.headers[h] for h in FORWARDED_HEADERS if h in response.headers}
        return view.bytes(body, content_type=response.content_type, status=response.status,
                          headers=kept)


def owned_here(rt: Runtime, key: str) -> bool:
    """Does this worker own ``key`` by the current assignment?"""
    try:
        owner = rt.app.router.key_store(rt.cache.name, key)
    except KeyError:
        return False
    return str(owner).rstrip("/") == own_url(rt)


async def read_entry(view: web.View, rt: Runtime, service: str, endpoint: str, symbol: str,
                     key: str, wait: float = 0.0, max_age: float | None = None, *,
                     may_force: bool = True, owned: bool = False) -> web.Response:
    """Answer a read on the owning worker; ask for a refresh if it is not fresh, and with
    ``wait`` hold the answer until that refresh lands (one upstream call for all).

    On the key's owner (``owned``), once its assignment is settled, the refresh is
    admitted in place (``quotacache/admission.py``: a refresh already in flight is not
    ordered again unless the key's read rate has grown enough to rank its waiting order
    again); elsewhere it goes to ``internal.requests``. On the owner a
    HIT's answer is kept encoded for the hit path (``quotacache/web/hits.py``)."""
    config = rt.settings.service(service)
    now = rt.clock()
    rt.demand.read(key, now)
    entry = rt.cache.get(key)
    state = classify(entry, now, config.max_staleness, max_age)
    if state is not Freshness.HIT:
        # A max_age tighter than the TTL needs force: by the TTL the entry is fresh.
        force = (may_force and entry is not None and max_age is not None
                 and entry.is_fresh(now))
        until = now + wait if wait > 0 else None
        with rt.waiters.watch(key, until=until) as landed:  # the landing wakes us
            request = RefreshRequest(service=service, endpoint=endpoint, symbol=symbol,
                                     reason="read", force=force)
            try:
                # A send waits while the producer's buffer is full (the broker is down):
                # the read is answered anyway, promptly (/health says what is wrong).
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    if owned and not_ready(rt) is None:  # in place: a topic hop less
                        await admit_request(rt, request, symbol, key)
                    else:
                        await rt.topics.send(rt.topics.requests, key, request)
            except TimeoutError:
                log.debug("refresh of %s not requested: the broker takes no record", key)
            except Exception:  # the read is still answered
                log.exception("could not request a refresh of %s", key)
            if wait > 0:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(landed.wait(), wait)
                now = rt.clock()
                entry = rt.cache.get(key)
                state = classify(entry, now, config.max_staleness, max_age)
    rt.stats.count({Freshness.HIT: "hits", Freshness.STALE: "stale_served",
                    Freshness.MISS: "misses"}[state], f"{service}/{endpoint}")
    if state is Freshness.HIT:  # a direct client would have called the upstream
        rt.stats.count("calls_saved", f"{service}/{endpoint}")
    body: dict[str, Any] = {"service": service, "endpoint": endpoint, "symbol": symbol,
                            "status": state.value, "fresh": state is Freshness.HIT}
    headers = {"X-Cache": state.value}
    if state is Freshness.MISS or entry is None:
        body.update(data=None, fetched_at=None, age=None, ttl=config.endpoints[endpoint].ttl,
                    refresh_requested=True)
        return view.json(body, status=202, headers=headers)
    if owned and state is Freshness.HIT and max_age is None:
        remember(rt, key, encode(service, endpoint, symbol, entry, config.max_staleness))
    age = entry.age(now)
    body.update(data=entry.data, fetched_at=entry.fetched_at, age=round(age, 3), ttl=entry.ttl,
                refresh_requested=state is Freshness.STALE)
    headers["Age"] = str(math.floor(age))
    return view.json(body, headers=headers)
