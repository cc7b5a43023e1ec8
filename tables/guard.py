"""Who may do what over HTTP: the token of mutating endpoints and a per-client rate limit.

The token is compared in constant time (``hmac.compare_digest``), so its bytes cannot be
guessed from answer times. The rate limit is a token bucket per client address, applied
to every request before any view runs; a client over it gets 429 with Retry-After.
Workers of the same app forwarding reads to a key's owner, and ``/health`` probes, are
not limited.
"""

from __future__ import annotations

import hmac
import json
import math
import time
from collections.abc import Awaitable, Callable

from aiohttp import web as aioweb

from quotacache.settings import WebConfig

Handler = Callable[[aioweb.Request], Awaitable[aioweb.StreamResponse]]
Middleware = Callable[[aioweb.Request, Handler], Awaitable[aioweb.StreamResponse]]
#: Buckets idle this long are forgotten (a client that has been away starts full).
IDLE = 60.0
MAX_CLIENTS = 10_000


def authorized(config: WebConfig, header: str | None) -> bool:
    """True when no token is configured, or ``header`` is ``Bearer <the token>``."""
    token = config.token_value()
    if not token:
        return True
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                              token.encode())


def json_error(status: int, message: str, headers: dict[str, str] | None = None
               ) -> aioweb.Response:
    return aioweb.Response(text=json.dumps({"error": message, "status": status}),
                           status=status, content_type="application/json", headers=headers)


class RequestLimiter:
    """A token bucket per client address: ``rate`` per second, ``burst`` at most."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.buckets: dict[str, tuple[float, float]] = {}  # address -> (tokens, at)

    def take(self, address: str) -> float:
        """0 when the request may go, else the seconds until it could."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        tokens, at = self.buckets.get(address, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if tokens >= 1.0 - 1e-9:  # float sums of rate x elapsed fall just short
            self._store(address, max(0.0, tokens - 1.0), now)
            return 0.0
        self._store(address, tokens, now)
        return (1.0 - tokens) / self.rate

    def _store(self, address: str, tokens: float, now: float) -> None:
        if len(self.buckets) >= MAX_CLIENTS and address not in self.buckets:
            self.buckets = {a: (t, when) for a, (t, when) in self.buckets.items()
                            if now - when < IDLE}
        self.buckets[address] = (tokens, now)


def rate_limit_middleware(limiter: RequestLimiter, is_peer: Callable[[str], bool]
                          ) -> Middleware:
    @aioweb.middleware
    async def limit_requests(request: aioweb.Request, handler: Handler
                             ) -> aioweb.StreamResponse:
        address = request.remote or "?"
        if request.path != "/health" and not is_peer(address):  # probes are never held
            wait = limiter.take(address)
            if wait > 0:
                return json_error(429, f"more than {limiter.rate:g} requests per second "
                                  "from this address", {"Retry-After": str(math.ceil(wait))})
        return await handler(request)

    return limit_requests
