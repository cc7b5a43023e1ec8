"""What the workers say about themselves: readiness, statistics, and each service's status.

A service's status (limits, pause, breaker, queue) lives on the worker that owns the
service; any worker answers ``/status`` by asking that owner, so the answer is the same
whichever worker a client reaches.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import aiohttp
from faust import web

from quotacache.errors import UnknownTarget
from quotacache.runtime import Runtime
from quotacache.web.cluster import collect, own_url
from quotacache.web.errors import HttpError
from quotacache.web.guard import RETRY_WHILE_STARTING, peer_headers


def register(rt: Runtime) -> None:
    app = rt.app

    @app.page("/health")
    class HealthView(web.View):
        async def get(self, request: web.Request) -> web.Response:
            # Not ready yet: the guard has answered 503 already. Ready, but the sends do
            # not reach the broker, or an agent keeps failing: 503 as well, in the same
            # error shape, with the reason.
            ready = is_ready(rt)
            problem = running_problem(rt) if ready else None
            if problem is not None:
                raise HttpError(503, f"not ready: {problem}",
                                {"Retry-After": str(RETRY_WHILE_STARTING)})
            return self.json({"ready": ready, "sends": rt.topics.health.snapshot(),
                              "failures": dict(rt.failures.total)},
                             status=200 if ready else 503)

    @app.page("/stats")
    class StatsView(web.View):
        async def get(self, request: web.Request) -> web.Response:
            scope = request.query.get("scope", "cluster")
            if scope not in ("cluster", "local"):
                raise HttpError(400, "scope must be 'cluster' or 'local'")
            local = local_stats(rt)
            if scope == "local":
                return self.json({**local, "scope": "local", "worker": own_url(rt)})
            return self.json(await collect(rt, local))

    @app.page("/status")
    class StatusView(web.View):
        async def get(self, request: web.Request) -> web.Response:
            services = {}
            for name in rt.settings.services:
                services[name] = await service_status(rt, name)
            now = rt.clock()
            volatile = {str(symbol): until for symbol, until in rt.control.volatile.items()
                        if float(until) > now}
            return self.json({"in_flight_keys": len(rt.inflight), "volatile": volatile,
                              "asyncio_tasks": len(asyncio.all_tasks()),
                              # this worker's maps keyed by what requests name: their sizes
                              "waiting_readers": len(rt.waiters),
                              "read_rate_keys": len(rt.demand),
                              "hot_answers": len(rt.cache.hot),
                              "services": services})

    @app.page("/status/{service}")
    class ServiceStatusView(web.View):
        async def get(self, request: web.Request, service: str) -> web.Response:
            if service not in rt.settings.services:
                raise UnknownTarget(f"unknown service {service!r}")
            return self.json(await service_status(rt, service))


def owner_status(rt: Runtime, service: str) -> dict[str, Any]:
    """The service's limits, health and queue, as the worker that owns it sees them."""
    config = rt.settings.service(service)
    now = rt.clock()
    health = rt.health.get(service)
    state = rt.control.strategy(service)
    return {
        "owner": own_url(rt),
        "strategy": state.strategy,
        "strategy_pinned": state.pinned,
        "limits": rt.limiter.usage(service, now),
        "paused_until": health.paused_until if health.paused_until > now else None,
        "pause_reason": health.pause_reason if health.paused_until > now else None,
        "breaker": health.breaker_state(now, config.breaker_cooldown).value,
        "consecutive_failures": health.consecutive_failures,
        "upstream_remaining_hint": health.hint_remaining if health.hint_reset > now else None,
        "upstream_hint_reset": health.hint_reset if health.hint_reset > now else None,
        "budget_use": round(rt.budget_use(service, now), 3),
        "queue": rt.backlog.by_priority(service),
        "in_flight_calls": rt.backlog.calls_in_flight(service),
    }


async def service_status(rt: Runtime, service: str) -> dict[str, Any]:
    """The service's status from the worker that owns it (this one, or asked over HTTP)."""
    owner = rt.owner_url(service)
    if owner is None:
        return {"error": "partitions not assigned yet"}
    if owner == own_url(rt):
        return owner_status(rt, service)
    try:
        async with rt.app.http_client.get(f"{owner}/status/{service}",
                                           headers=peer_headers(rt.settings.web),
                                           timeout=aiohttp.ClientTimeout(total=5)) as response:
            return dict(await response.json())
    except Exception as exc:  # the owner is down or rebalancing: say so, do not fail
        return {"error": f"owner {owner} unavailable: {type(exc).__name__}"}


def local_stats(rt: Runtime) -> dict[str, Any]:
    """This worker's counters, the freshness of the entries it owns, and the global tables."""
    return {
        **rt.stats.snapshot(),
        "freshness": rt.cache.freshness(rt.clock()),
        "monitored_symbols": len(rt.control.monitored_endpoints()),
        "strategy_history": {name: rt.control.strategy(name).history
                             for name in rt.settings.services},
    }


def not_ready(rt: Runtime) -> str | None:
    """Why reads cannot be answered from full state yet, or None once partitions are
    assigned and every table is recovered."""
    app = rt.app
    if getattr(app, "rebalancing", False):
        return "rebalancing"
    if not app.assignor.assigned_actives():
        return "partitions not assigned yet"
    if not app.tables.recovery.completed.is_set():
        return "tables are being recovered"
    return None


def is_ready(rt: Runtime) -> bool:
    return not_ready(rt) is None


def starting(rt: Runtime) -> str | None:
    """Why this worker has not been ready yet (None once it has been, ever): the guard
    answers 503 until then. A later rebalance is not a start: reads go on being answered
    from the state the worker holds (``/health`` says it is rebalancing)."""
    if rt.has_been_ready:
        return None
    reason = not_ready(rt)
    rt.has_been_ready = reason is None
    if rt.has_been_ready:
        # The start-up heap (Faust, aiokafka, the tables' state) lives as long as the
        # worker: frozen, the collector's full passes skip it. Unfrozen, each took
        # 60-70 ms under wrk (timed with gc.callbacks); frozen, about 1 ms.
        gc.collect()
        gc.freeze()
    return reason


def running_problem(rt: Runtime) -> str | None:
    """Why this ready worker's pipeline is not working (None when it is): its sends do
    not reach the broker, or a part of it keeps failing (``failures.py``). A worker that
    can read but not send or fetch answers every miss with a refresh that never comes.
    Only ``/health`` says so; reads are still answered (from the cache, or as a MISS)."""
    return rt.topics.health.problem() or rt.failures.problem()
