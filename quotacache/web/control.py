"""HTTP views that change what quotacache does: refresh, batch, monitored symbols, strategy.

Bodies are the pydantic models of ``schemas``; the guard middleware has checked the token
and turns every error into the one JSON shape (400 for a bad body or symbol, 404 for an
unknown service or endpoint, 503 with Retry-After when the broker does not take a
request). Requests are published to the topics (the key's owner decides): these views
answer once the broker has them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

from faust import web

from quotacache.errors import InvalidSymbol, NotDelivered, UnknownTarget
from quotacache.policy.strategy import Strategy, pin, release
from quotacache.runtime import Runtime
from quotacache.streams.records import RefreshRequest, normalize_symbol
from quotacache.tables.control import MAX_MONITORED
from quotacache.units import Priority
from quotacache.web.errors import HttpError
from quotacache.web.schemas import (
    MAX_BATCH,
    BatchBody,
    MonitorBody,
    RefreshBody,
    StrategyBody,
    UnmonitorBody,
    parse_body,
)


def monitored_symbol(value: str) -> str:
    try:
        symbol = normalize_symbol(value)
    except ValueError as exc:
        raise InvalidSymbol(f"{value!r}: {exc}") from None
    if symbol == "*":
        raise InvalidSymbol("monitor named symbols, not '*'")
    return symbol


def endpoint_refs(rt: Runtime, refs: list[str]) -> list[tuple[str, str]]:
    """Validate "service/endpoint" names against the configuration."""
    out = []
    for ref in refs:
        service, _, endpoint = ref.partition("/")
        rt.resolve(service, endpoint, "BTC")  # raises UnknownTarget naming what is wrong
        out.append((service, endpoint))
    return out


def default_endpoints(rt: Runtime) -> list[str]:
    """What a symbol is kept fresh on when POST /symbols names no endpoints: the
    scheduler's ``default_endpoints`` that are configured, else every configured
    endpoint that takes a symbol (the user's own services, not a built-in profile)."""
    services = rt.settings.services
    configured = [ref for ref in rt.settings.scheduler.default_endpoints
                  if (service := ref.partition("/")[0]) in services
                  and ref.partition("/")[2] in services[service].endpoints]
    return configured or [f"{name}/{endpoint}"
                          for name, cfg in rt.settings.services.items()
                          for endpoint, spec in cfg.endpoints.items()
                          if spec.takes_symbol and not spec.fan_out]


def batch_requests(rt: Runtime, symbols: list[str], refs: list[tuple[str, str]],
                   priority: Priority | None, force: bool) -> dict[str, RefreshRequest]:
    """One request per cache key; a list (fan-out) endpoint is asked once for all symbols."""
    requests: dict[str, RefreshRequest] = {}
    for service, endpoint in refs:
        spec = rt.settings.service(service).endpoints[endpoint]
        for symbol in (["*"] if spec.fan_out or not spec.takes_symbol else symbols):
            resolved, key = rt.resolve(service, endpoint, symbol)
            requests.setdefault(key, RefreshRequest(service=service, endpoint=endpoint,
                                                    symbol=resolved, priority=priority,
                                                    force=force, reason="batch"))
    return requests


T = TypeVar("T")

#: Seconds a writer is told to wait before trying a refused publish again.
REPUBLISH_AFTER = 5


async def publish(rt: Runtime, requests: Mapping[str, RefreshRequest]) -> None:
    """Publish refresh requests (cache key -> request) on ``internal.requests``; a 503
    saying why (and when to try again) when the broker does not take them."""
    try:
        await rt.topics.publish(rt.topics.requests, requests)
    except NotDelivered as exc:
        raise HttpError(503, f"not published: {exc}",
                        {"Retry-After": str(REPUBLISH_AFTER)}) from None


async def saved(rt: Runtime, write: Callable[[], T]) -> T:
    """Apply ``write`` to the control tables and answer once their changelog has it: a
    worker killed right after a 200 must find the change at its restart. A 503 saying
    why when the broker does not take it (the change, made already in this worker, may
    be lost)."""
    try:
        if problem := rt.topics.health.problem():  # known to fail: do not even write
            raise NotDelivered(problem)
        result = write()
        await rt.topics.confirm_sent()
    except NotDelivered as exc:
        raise HttpError(503, f"not saved: {exc}",
                        {"Retry-After": str(REPUBLISH_AFTER)}) from None
    return result


def register(rt: Runtime) -> None:
    app = rt.app

    @app.page("/refresh")
    class RefreshView(web.View):
        async def post(self, request: web.Request) -> web.Response:
            body = await parse_body(request, RefreshBody)
            resolved, key = rt.resolve(body.service, body.endpoint, body.symbol)
            await publish(rt, {key: RefreshRequest(
                service=body.service, endpoint=body.endpoint, symbol=resolved,
                priority=body.priority, force=body.force)})
            return self.json({"requested": key}, status=202)

    @app.page("/batch")
    class BatchView(web.View):
        async def post(self, request: web.Request) -> web.Response:
            body = await parse_body(request, BatchBody)
            refs = endpoint_refs(rt, body.endpoints)
            if len(body.symbols) * len(refs) > MAX_BATCH:
                raise HttpError(400, f"a batch is at most {MAX_BATCH} symbol x endpoint pairs")
            requests = batch_requests(rt, body.symbols, refs, body.priority, body.force)
            await publish(rt, requests)
            return self.json({"requested": sorted(requests)}, status=202)

    @app.page("/symbols")
    class SymbolsView(web.View):
        async def get(self, request: web.Request) -> web.Response:
            return self.json({"symbols": rt.control.monitored_endpoints()})

        async def post(self, request: web.Request) -> web.Response:
            body = await parse_body(request, MonitorBody)
            symbols = [monitored_symbol(s) for s in body.symbols]
            refs = body.endpoints or default_endpoints(rt)
            wanted = {f"{s}/{e}" for s, e in endpoint_refs(rt, refs)}
            if not wanted:
                raise HttpError(400, "no endpoints to monitor")
            new = {s for s in symbols if s not in rt.control.monitored}
            if len(rt.control.monitored) + len(new) > MAX_MONITORED:
                raise HttpError(400, f"at most {MAX_MONITORED} symbols can be monitored")
            def monitor() -> None:
                for symbol in symbols:
                    current = set(rt.control.monitored.get(symbol) or [])
                    rt.control.monitored[symbol] = sorted(current | wanted)

            await saved(rt, monitor)
            return self.json({"symbols": rt.control.monitored_endpoints()})

        async def delete(self, request: web.Request) -> web.Response:
            body = await parse_body(request, UnmonitorBody)
            def unmonitor() -> list[str]:
                removed = []
                for symbol in body.symbols:
                    key = symbol.upper()
                    if key in rt.control.monitored:
                        del rt.control.monitored[key]
                        removed.append(key)
                return removed

            removed = await saved(rt, unmonitor)
            return self.json({"removed": removed, "symbols": rt.control.monitored_endpoints()})

    @app.page("/strategy")
    class StrategyView(web.View):
        async def get(self, request: web.Request) -> web.Response:
            return self.json({name: rt.control.strategy(name).to_dict()
                              for name in rt.settings.services})

        async def post(self, request: web.Request) -> web.Response:
            body = await parse_body(request, StrategyBody)
            if body.service not in rt.settings.services:
                raise UnknownTarget(f"unknown service {body.service!r}")
            if not body.release and body.strategy is None:
                raise HttpError(400, f"strategy: give one of {', '.join(Strategy)}, "
                                "or release: true")
            state = rt.control.strategy(body.service)

            def set_strategy() -> None:
                if body.release:
                    release(state, rt.clock())
                else:
                    pin(state, body.strategy, rt.clock())
                rt.control.save_strategy(body.service, state)

            await saved(rt, set_strategy)
            return self.json(state.to_dict())
