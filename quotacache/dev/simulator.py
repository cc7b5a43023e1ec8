"""The upstream simulator: a real HTTP server shaped like Cryptometer and KingFisher's upstreams.

It answers every path of the built-in profiles with plausible JSON after a random latency,
and enforces its own limits (sliding windows, counted on arrival) with 429 + Retry-After,
so tests can count what quotacache really sent: ``GET /_sim/stats`` gives accepted and
rejected calls per service and endpoint. ``POST /_sim/config`` changes latency, limits and
failure modes at run time; ``POST /_sim/reset`` zeroes the counts.

It is open by default: any API key or none is accepted, so it can run by hand beside a
worker that has no keys set. With ``require_keys`` (``--require-keys``) a call without the
key where the profile puts it (query parameter or header) gets a 401, and where the
profile's variable (``CRYPTOMETER_API_KEY``, ...) is set in the simulator's environment the
key must equal it.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import os
import random
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

from aiohttp import web

from quotacache.services import CRYPTOMETER, KINGFISHER, KINGFISHER_AIRTABLE, KINGFISHER_TELEGRAM
from quotacache.settings import RateLimit

FAIL_MODES = ("500", "garbage", "timeout", "error_envelope", "429", "429date")


@dataclass
class SimService:
    """One simulated upstream: its route prefix, limits, and how it answers."""

    name: str
    prefix: str
    key_param: str | None
    key_header: str | None
    key_env: str | None  # the variable that holds the real key (auth.env of the profile)
    limits: list[RateLimit]
    endpoint_limits: list[RateLimit]
    paths: dict[str, str]  # path -> endpoint name
    envelope: bool
    fail: str | None = None
    calls: dict[str, deque[float]] = field(default_factory=lambda: defaultdict(deque))


def _limits(values: list[str]) -> list[RateLimit]:
    return [RateLimit.model_validate(v) for v in values]


def default_services() -> dict[str, SimService]:
    def build(name: str, prefix: str, profile: dict[str, Any], envelope: bool) -> SimService:
        auth = profile.get("auth", {})
        return SimService(
            name=name, prefix=prefix, key_param=auth.get("query"), key_header=auth.get("header"),
            key_env=auth.get("env"),
            limits=_limits(profile.get("limits", [])),
            endpoint_limits=_limits(profile.get("endpoint_limits", [])),
            paths={spec["path"]: ep for ep, spec in profile["endpoints"].items()},
            envelope=envelope)

    return {
        "cryptometer": build("cryptometer", "", CRYPTOMETER, True),
        "kingfisher": build("kingfisher", "/kingfisher", KINGFISHER, False),
        "kingfisher_airtable": build("kingfisher_airtable", "/airtable", KINGFISHER_AIRTABLE,
                                     False),
        "kingfisher_telegram": build("kingfisher_telegram", "/telegram", KINGFISHER_TELEGRAM,
                                     False),
    }


def key_variables() -> list[str]:
    """The environment variables that hold the profiles' keys (checked with require_keys)."""
    return sorted({s.key_env for s in default_services().values() if s.key_env})


def _retry_after(window: deque[float], limit: RateLimit, now: float) -> float | None:
    """None if ``limit`` has room at ``now``, else the seconds until it has."""
    horizon = now - limit.seconds
    inside = [t for t in window if t > horizon]
    if len(inside) < limit.calls:
        return None
    return inside[len(inside) - limit.calls] + limit.seconds - now


class Simulator:
    """State and handlers of the simulator; ``app()`` builds the aiohttp application."""

    def __init__(self, latency: tuple[float, float] = (0.2, 0.5), seed: int | None = None,
                 *, require_keys: bool = False, keys: dict[str, str] | None = None):
        self.latency = latency
        #: Refuse calls without an API key (else any key or none is accepted).
        self.require_keys = require_keys
        #: The key each service must be called with when keys are required (service ->
        #: key); by default the profile's variable where it is set, else any key will do.
        self.keys = keys if keys is not None else {
            name: os.environ[s.key_env] for name, s in default_services().items()
            if s.key_env and os.environ.get(s.key_env)}
        self.services = default_services()
        self.random = random.Random(seed)
        self.accepted: dict[str, int] = defaultdict(int)
        self.rejected: dict[str, int] = defaultdict(int)
        self.failed: dict[str, int] = defaultdict(int)
        self.call_log: list[tuple[float, str]] = []
        #: When each 429 of an enforced limit was sent (arrival time, endpoint).
        self.reject_log: list[tuple[float, str]] = []
        #: Retry-After (seconds) of the 429 failure modes.
        self.fail_retry_after = 30

    def app(self) -> web.Application:
        application = web.Application()
        application.router.add_get("/_sim/stats", self.stats)
        application.router.add_post("/_sim/config", self.configure)
        application.router.add_post("/_sim/reset", self.reset)
        application.router.add_get("/{tail:.*}", self.answer)
        return application

    def _route(self, path: str) -> tuple[SimService, str] | None:
        for service in self.services.values():
            if service.prefix and not path.startswith(service.prefix + "/"):
                continue
            endpoint = service.paths.get(path[len(service.prefix):])
            if endpoint:
                return service, endpoint
        return None

    def _over_limit(self, service: SimService, endpoint: str, now: float) -> float | None:
        waits = []
        for scope, limits in (("", service.limits), (endpoint, service.endpoint_limits)):
            window = service.calls[scope]
            while window and window[0] < now - 24 * 3600:
                window.popleft()
            for limit in limits:
                wait = _retry_after(window, limit, now)
                if wait is not None:
                    waits.append(wait)
        return max(waits) if waits else None

    async def answer(self, request: web.Request) -> web.Response:
        now = time.time()
        routed = self._route(request.path)
        if routed is None:
            return web.json_response({"success": "false", "error": "Unknown endpoint"}, status=404)
        service, endpoint = routed
        name = f"{service.name}/{endpoint}"
        refused = self._refuse_key(service, request)
        if refused is not None:
            return refused
        wait = self._over_limit(service, endpoint, now)
        if wait is not None:
            self.rejected[name] += 1
            self.reject_log.append((now, name))
            return web.json_response({"success": "false", "error": "Too many requests"},
                                     status=429,
                                     headers={"Retry-After": str(max(1, math.ceil(wait)))})
        service.calls[""].append(now)
        service.calls[endpoint].append(now)
        self.accepted[name] += 1
        self.call_log.append((now, name))
        await asyncio.sleep(self.random.uniform(*self.latency))
        if service.fail:
            return await self._fail(service, name)
        body = self._data(service, endpoint, dict(request.query))
        if service.envelope:
            body = {"success": "true", "error": "false", "data": body}
        return web.json_response(body, headers=self._hint_headers(service, now))

    def _refuse_key(self, service: SimService, request: web.Request) -> web.Response | None:
        """A 401 when keys are required and the call has none (or not the configured one)."""
        if not self.require_keys:
            return None
        key = (request.query.get(service.key_param) if service.key_param
               else request.headers.get(service.key_header or ""))
        if not key:
            return web.json_response({"success": "false", "error": "API key missing"},
                                     status=401)
        expected = self.keys.get(service.name)
        if expected and not hmac.compare_digest(key.encode(), expected.encode()):
            return web.json_response({"success": "false", "error": "API key wrong"},
                                     status=401)
        return None

    def _hint_headers(self, service: SimService, now: float) -> dict[str, str]:
        """X-RateLimit-* for the service's longest window, as many APIs send them."""
        if not service.limits:
            return {}
        limit = max(service.limits, key=lambda lim: lim.seconds)
        inside = [t for t in service.calls[""] if t > now - limit.seconds]
        reset = (inside[0] + limit.seconds - now) if inside else limit.seconds
        return {"X-RateLimit-Limit": str(limit.calls),
                "X-RateLimit-Remaining": str(max(0, limit.calls - len(inside))),
                "X-RateLimit-Reset": str(max(1, math.ceil(reset)))}

    async def _fail(self, service: SimService, name: str) -> web.Response:
        self.failed[name] += 1
        if service.fail == "500":
            return web.json_response({"error": "internal"}, status=500)
        if service.fail == "garbage":
            return web.Response(text="<html>oops</html>", content_type="text/html")
        if service.fail == "timeout":
            await asyncio.sleep(3600)
        if service.fail == "429":
            return web.json_response({"error": "slow down"}, status=429,
                                     headers={"Retry-After": str(self.fail_retry_after)})
        if service.fail == "429date":
            when = formatdate(time.time() + self.fail_retry_after, usegmt=True)
            return web.json_response({"error": "slow down"}, status=429,
                                     headers={"Retry-After": when})
        return web.json_response({"success": "false", "error": "No updates!"})

    def _data(self, service: SimService, endpoint: str, query: dict[str, str]) -> Any:
        query.pop(service.key_param or "", None)
        symbol = next((query[k] for k in ("symbol", "market_pair", "pair") if k in query), "*")
        price = round(self.random.uniform(10, 70000), 2)
        if endpoint in ("tickerlist", "tickerlist_pro", "coinlist"):
            return [{"symbol": s, "price": round(self.random.uniform(1, 70000), 2)}
                    for s in ("BTC", "ETH", "SOL", "XRP", "DOGE", "ADA", "AVAX", "LINK")]
        return {"endpoint": endpoint, "symbol": symbol, "params": query, "value": price,
                "generated_at": time.time()}

    async def stats(self, request: web.Request) -> web.Response:
        def by_service(counts: dict[str, int]) -> dict[str, int]:
            totals: dict[str, int] = defaultdict(int)
            for name, n in counts.items():
                totals[name.split("/")[0]] += n
            return dict(totals)

        return web.json_response({
            "accepted": sum(self.accepted.values()), "rejected": sum(self.rejected.values()),
            "failed": sum(self.failed.values()),
            "accepted_by_endpoint": dict(self.accepted),
            "rejected_by_endpoint": dict(self.rejected),
            "accepted_by_service": by_service(self.accepted),
            "rejected_by_service": by_service(self.rejected),
            "latency": list(self.latency),
            "call_log": self.call_log[-5000:] if request.query.get("log") else None,
            "reject_log": self.reject_log[-5000:] if request.query.get("log") else None,
        })

    async def configure(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            if "latency" in body:
                low, high = (float(x) for x in body["latency"])
                if not 0 <= low <= high:
                    raise ValueError("latency needs 0 <= low <= high")
                self.latency = (low, high)
            for name, values in (body.get("limits") or {}).items():
                self.services[name].limits = _limits(values)
            for name, values in (body.get("endpoint_limits") or {}).items():
                self.services[name].endpoint_limits = _limits(values)
            if "require_keys" in body:
                self.require_keys = bool(body["require_keys"])
            if "fail_retry_after" in body:
                self.fail_retry_after = int(body["fail_retry_after"])
            for name, mode in (body.get("fail") or {}).items():
                if mode is not None and mode not in FAIL_MODES:
                    raise ValueError(f"fail mode {mode!r} is not one of {FAIL_MODES}")
                self.services[name].fail = mode
        except KeyError as exc:
            return web.json_response({"error": f"unknown service {exc}"}, status=400)
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"ok": True})

    async def reset(self, request: web.Request) -> web.Response:
        self.accepted.clear()
        self.rejected.clear()
        self.failed.clear()
        self.call_log.clear()
        self.reject_log.clear()
        for service in self.services.values():
            service.calls.clear()
        return web.json_response({"ok": True})


def run(host: str = "127.0.0.1", port: int = 28080, latency: tuple[float, float] = (0.2, 0.5),
        seed: int | None = None, *, require_keys: bool = False) -> None:
    """Serve the simulator until interrupted (open unless ``require_keys``). A stop waits
    at most a second for answers under way: one held by the ``timeout`` fault never ends."""
    web.run_app(Simulator(latency, seed, require_keys=require_keys).app(), host=host,
                port=port, print=None, access_log=None, shutdown_timeout=1.0)
