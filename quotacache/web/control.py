"""HTTP views that change what quotacache does: refresh, batch, monitored symbols, strategy.

Bodies are JSON; anything malformed is a 400 naming the problem, an unknown service or
endpoint a 404. Requests are published to the topics (the key's owner decides), so these
views answer at once with what was published.
"""

from __future__ import annotations

import json
from typing import Any

from faust import web

from quotacache.errors import InvalidSymbol, UnknownTarget
from quotacache.policy.strategy import Strategy, pin, release
from quotacache.runtime import Runtime
from quotacache.settings import Priority
from quotacache.streams.records import RefreshRequest, normalize_symbol
from quotacache.web.guard import authorized
from quotacache.web.reads import error

MAX_BATCH = 2000


class BadRequest(ValueError):
    """A request body that cannot be acted on; the text is the 400 message."""


MAX_BODY_BYTES = 256 * 1024


async def body_of(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if len(raw) > MAX_BODY_BYTES:
        raise BadRequest(f"body is larger than {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(raw or b"{}")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    return body


def strings(body: dict[str, Any], name: str, *, required: bool = True) -> list[str]:
    value = body.get(name)
    if value is None and not required:
        return []
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise BadRequest(f"'{name}' must be a non-empty list of strings")
    return value


def priority_of(body: dict[str, Any]) -> Priority | None:
    value = body.get("priority")
    if value is None:
        return None
    try:
        return Priority(value)
    except ValueError:
        raise BadRequest(f"'priority' must be one of {[p.value for p in Priority]}") from None


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


def register(rt: Runtime) -> None:
    app = rt.app

    async def guarded(view: web.View, request: web.Request, handler: Any) -> web.Response:
        """Every change goes through here: the token first, then 4xx for bad input."""
        if not authorized(rt.settings.web, request.headers.get("Authorization")):
            return view.json({"error": "a valid 'Authorization: Bearer <token>' header is "
                              "required to change anything", "status": 401}, status=401,
                             headers={"WWW-Authenticate": "Bearer"})
        try:
            return await handler()
        except BadRequest as exc:
            return error(view, 400, str(exc))
        except InvalidSymbol as exc:
            return error(view, 400, str(exc))
        except UnknownTarget as exc:
            return error(view, 404, str(exc))

    @app.page("/refresh")
    class RefreshView(web.View):
        async def post(self, request: web.Request) -> web.Response:
            async def handle() -> web.Response:
                body = await body_of(request)
                for name in ("service", "endpoint"):
                    if not isinstance(body.get(name), str):
                        raise BadRequest(f"'{name}' is required (a string)")
                symbol = body.get("symbol", "*")
                if not isinstance(symbol, str):
                    raise BadRequest("'symbol' must be a string")
                resolved, key = rt.resolve(body["service"], body["endpoint"], symbol)
                req = RefreshRequest(service=body["service"], endpoint=body["endpoint"],
                                     symbol=resolved, priority=priority_of(body),
                                     force=bool(body.get("force", False)))
                await rt.topics.send(rt.topics.requests, key, req)
                return self.json({"requested": key}, status=202)

            return await guarded(self, request, handle)

    @app.page("/batch")
    class BatchView(web.View):
        async def post(self, request: web.Request) -> web.Response:
            async def handle() -> web.Response:
                body = await body_of(request)
                symbols = strings(body, "symbols")
                refs = endpoint_refs(rt, strings(body, "endpoints"))
                if len(symbols) * len(refs) > MAX_BATCH:
                    raise BadRequest(f"a batch is at most {MAX_BATCH} symbol x endpoint pairs")
                requests = batch_requests(rt, symbols, refs, priority_of(body),
                                          bool(body.get("force", False)))
                for key, req in requests.items():
                    await rt.topics.send(rt.topics.requests, key, req)
                return self.json({"requested": sorted(requests)}, status=202)

            return await guarded(self, request, handle)

    @app.page("/symbols")
    class SymbolsView(web.View):
        async def get(self, request: web.Request) -> web.Response:
            return self.json({"symbols": rt.control.monitored_endpoints()})

        async def post(self, request: web.Request) -> web.Response:
            async def handle() -> web.Response:
                body = await body_of(request)
                symbols = [monitored_symbol(s) for s in strings(body, "symbols")]
                refs = strings(body, "endpoints", required=False) or [
                    ref for ref in rt.settings.scheduler.default_endpoints
                    if ref.partition("/")[0] in rt.settings.services]
                wanted = {f"{s}/{e}" for s, e in endpoint_refs(rt, refs)}
                if not wanted:
                    raise BadRequest("no endpoints to monitor")
                for symbol in symbols:
                    current = set(rt.control.monitored.get(symbol) or [])
                    rt.control.monitored[symbol] = sorted(current | wanted)
                return self.json({"symbols": rt.control.monitored_endpoints()})

            return await guarded(self, request, handle)

        async def delete(self, request: web.Request) -> web.Response:
            async def handle() -> web.Response:
                body = await body_of(request)
                removed = []
                for symbol in strings(body, "symbols"):
                    key = symbol.upper()
                    if key in rt.control.monitored:
                        del rt.control.monitored[key]
                        removed.append(key)
                return self.json({"removed": removed,
                                  "symbols": rt.control.monitored_endpoints()})

            return await guarded(self, request, handle)

    @app.page("/strategy")
    class StrategyView(web.View):
        async def get(self, request: web.Request) -> web.Response:
            return self.json({name: rt.control.strategy(name).to_dict()
                              for name in rt.settings.services})

        async def post(self, request: web.Request) -> web.Response:
            async def handle() -> web.Response:
                body = await body_of(request)
                service = body.get("service")
                if not isinstance(service, str):
                    raise BadRequest("'service' is required (a string)")
                if service not in rt.settings.services:
                    raise UnknownTarget(f"unknown service {service!r}")
                state = rt.control.strategy(service)
                now = rt.clock()
                if body.get("release"):
                    release(state, now)
                else:
                    try:
                        pin(state, Strategy(str(body.get("strategy", "")).upper()), now)
                    except ValueError:
                        raise BadRequest("'strategy' must be one of "
                                         f"{[s.value for s in Strategy]}, or release: true"
                                         ) from None
                rt.control.save_strategy(service, state)
                return self.json(state.to_dict())

            return await guarded(self, request, handle)
