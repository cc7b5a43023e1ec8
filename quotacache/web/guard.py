"""The one middleware in front of every route: readiness, request limit, token, errors.

Until the worker is ready every route answers 503 with Retry-After. Every client address
has a request rate limit. Every POST and DELETE changes something and needs the token
(when one is configured). The errors views raise (``HttpError``, unknown names, invalid
symbols, bad bodies) and any unexpected exception become the one JSON error shape, so no
route answers an HTML page or a bare 500.

The token is compared in constant time (``hmac.compare_digest``), so its bytes cannot be
guessed from answer times. ``/health`` probes are not rate limited, nor are the app's own
workers when a token is configured (they send it in ``X-Quotacache-Peer`` when they
forward reads or collect stats; without a token they are limited like any client, and a
forwarded read that the owner refuses is answered by the forwarding worker from its own
copy).
"""

from __future__ import annotations

import hmac
import logging
import math
import time
from collections.abc import Awaitable, Callable

from aiohttp import web as aioweb

from quotacache.errors import InvalidSymbol, UnknownTarget
from quotacache.settings import WebConfig
from quotacache.web.errors import HttpError, error_response

log = logging.getLogger(__name__)

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


#: Sent by a worker to the other workers of its app (forwarded reads, stats), with the
#: configured token: such requests are not rate limited. It never grants a change.
PEER_HEADER = "X-Quotacache-Peer"


def is_peer_request(config: WebConfig, peer_header: str | None) -> bool:
    """True for a request from a worker of the same app (needs a configured token)."""
    token = config.token_value()
    return bool(token and peer_header) and hmac.compare_digest(
        str(peer_header).encode(), str(token).encode())


def peer_headers(config: WebConfig) -> dict[str, str]:
    """What a worker sends to its peers so their request limit lets it through."""
    token = config.token_value()
    return {PEER_HEADER: token} if token else {}


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
            kept = sorted(((when, a, t) for a, (t, when) in self.buckets.items()
                           if now - when < IDLE), reverse=True)[:MAX_CLIENTS // 2]
            self.buckets = {a: (t, when) for when, a, t in kept}  # bounded: newest half
        self.buckets[address] = (tokens, now)


#: Methods that change something: they need the token when one is configured.
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
UNAUTHORIZED = "a valid 'Authorization: Bearer <token>' header is required to change anything"


#: What a client not yet served is told to wait, in seconds.
RETRY_WHILE_STARTING = 2


def guard_middleware(limiter: RequestLimiter, config: WebConfig,
                     not_ready: Callable[[], str | None]) -> Middleware:
    """``not_ready`` says why the worker cannot answer yet (None once it can): until then
    every route, ``/health`` included, answers 503 with Retry-After, and nothing is
    written to a table before recovery has finished."""

    @aioweb.middleware
    async def guard(request: aioweb.Request, handler: Handler) -> aioweb.StreamResponse:
        if request.path != "/health" and not is_peer_request(  # probes are never held
                config, request.headers.get(PEER_HEADER)):
            wait = limiter.take(request.remote or "?")
            if wait > 0:
                return error_response(429, f"more than {limiter.rate:g} requests per second "
                                      "from this address", {"Retry-After": str(math.ceil(wait))})
        reason = not_ready()
        if reason is not None:
            return error_response(503, f"not ready: {reason}",
                                  {"Retry-After": str(RETRY_WHILE_STARTING)})
        if request.method in MUTATING and not authorized(config,
                                                         request.headers.get("Authorization")):
            return error_response(401, UNAUTHORIZED, {"WWW-Authenticate": "Bearer"})
        try:
            return await handler(request)
        except HttpError as exc:
            return error_response(exc.status, exc.message, exc.headers)
        except UnknownTarget as exc:
            return error_response(404, str(exc))
        except InvalidSymbol as exc:
            return error_response(400, str(exc))
        except aioweb.HTTPException as exc:  # aiohttp's own: no route, wrong method, too big
            if exc.status < 400:
                raise
            return error_response(exc.status, exc.reason, {
                k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")})
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            return error_response(500, "internal error (logged by the worker)")

    return guard
