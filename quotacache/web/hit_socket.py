"""Hits answered at the socket: a plain GET of a hot key never reaches aiohttp.

Each connection's protocol looks at what arrives before aiohttp does. A chunk that is
exactly one complete ``GET /cache/...`` request of HTTP/1.1, with no body, no
``Connection`` other than keep-alive, no ``Expect``/``Upgrade`` and no peer header, for a
key whose encoded HIT answer is current (``hits.take``), is answered with those bytes
written straight to the transport: no request object, no middleware chain, no route.
The same guard applies first: 503 while starting and the per-address request limit
send the request the slow way, where the guard answers it.

Anything else (another route, a miss, a paused writer) is aiohttp's. A chunk is only
answered here while aiohttp has nothing of the connection left to answer, so answers
never overtake each other; after a chunk that does not end where a request without a
body ends (a partial request, a body), the connection stays aiohttp's. The answer's
bytes, headers and counters are the hit middleware's (``hits.py``): the two paths are
one behaviour, this one costs a few microseconds. Since aiohttp does not see the hits,
this protocol closes idle connections (``KEEPALIVE``, aiohttp's own default).

Installed as Faust's web driver ``quotacache://`` (``faust_app`` sets it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

from aiohttp import web_runner
from aiohttp.http import SERVER_SOFTWARE
from aiohttp.web_protocol import RequestHandler
from faust.web.drivers import DRIVERS
from faust.web.drivers.aiohttp import Web as AiohttpWeb

from quotacache.web import hits
from quotacache.web.guard import PEER_HEADER

log = logging.getLogger(__name__)

#: ``(request bytes, client address) -> answer bytes``, or None for the slow way.
Answerer = Callable[[bytes, str], "bytes | None"]

_PREFIX = b"GET " + hits.PREFIX.encode()
_END = b"\r\n\r\n"
_VERSION = b" HTTP/1.1"
#: Headers whose presence sends the request the slow way (aiohttp knows their rules).
_SLOW_HEADERS = frozenset({b"content-length", b"transfer-encoding", b"expect", b"upgrade",
                           PEER_HEADER.lower().encode()})
_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: " + hits.CONTENT_TYPE.encode()
         + b"\r\nX-Cache: HIT\r\nAge: ")
_SERVER = SERVER_SOFTWARE.encode()


def hot_target(data: bytes) -> str | None:
    """The key and query (``service/endpoint/SYMBOL[?...]``) of ``data`` when it is one
    plain request the socket may answer; None when aiohttp must parse it."""
    if not data.startswith(_PREFIX) or not data.endswith(_END) or data.count(_END) != 1:
        return None
    line_end = data.find(b"\r\n")
    line = data[:line_end]
    if not line.endswith(_VERSION):
        return None
    target = line[len(_PREFIX):-len(_VERSION)]
    if b" " in target or b"%" in target or b"#" in target:
        return None
    for header in data[line_end + 2:-4].split(b"\r\n"):
        name, colon, value = header.partition(b":")
        if not colon or not name or name != name.strip():  # malformed, or folded
            return None
        name = name.lower()
        if name in _SLOW_HEADERS or (name == b"connection"
                                     and value.strip().lower() != b"keep-alive"):
            return None
    try:
        return target.decode("ascii")
    except UnicodeDecodeError:
        return None


class _Date:
    """The ``Date`` header's value, formatted once a second."""

    def __init__(self) -> None:
        self.second = 0
        self.value = b""

    def now(self) -> bytes:
        second = int(time.time())
        if second != self.second:
            self.second, self.value = second, formatdate(second, usegmt=True).encode()
        return self.value


def hot_key(data: bytes) -> str | None:
    """The key ``data`` asks for when the socket may answer it (a plain request, no
    query but a valid ``wait``); None when aiohttp must."""
    target = hot_target(data)
    if target is None:
        return None
    key, _, query = target.partition("?")
    return key if hits.plain_query(query) else None


#: The parsed keys of this many distinct requests of at most this many bytes are kept:
#: the same bytes are not parsed twice, and no input grows the map past its bound.
KEPT_REQUESTS = 4096
KEPT_REQUEST_BYTES = 1024
_UNSEEN = object()


class Answers:
    """Answers for the socket: ``take(key, admit)`` is ``hits.take`` on the runtime,
    ``allowed`` the guard's readiness and request limit for a client address (asked only
    for a HIT: anything else is charged by the guard, once)."""

    def __init__(self, take: Callable[[str, Callable[[], bool]], tuple[bytes, int] | None],
                 allowed: Callable[[str], bool]) -> None:
        self.take = take
        self.allowed = allowed
        self.date = _Date()
        #: request bytes -> the key they ask for (None: aiohttp's). A bot repeats the
        #: same bytes for a key, so each is parsed once; bounded (``KEPT_REQUESTS``).
        self.keys: dict[bytes, str | None] = {}

    def __call__(self, data: bytes, address: str) -> bytes | None:
        keys = self.keys
        key = keys.get(data, _UNSEEN)
        if key is _UNSEEN:
            key = hot_key(data)
            if len(data) <= KEPT_REQUEST_BYTES:
                if len(keys) >= KEPT_REQUESTS:
                    keys.clear()
                keys[data] = key
        if key is None:
            return None
        found = self.take(key, lambda: self.allowed(address))
        if found is None:
            return None
        body, age = found
        return b"".join((_HEAD, str(age).encode(), b"\r\nContent-Length: ",
                         str(len(body)).encode(), b"\r\nDate: ", self.date.now(),
                         b"\r\nServer: ", _SERVER, b"\r\n\r\n", body))


#: Seconds a connection may sit idle before it is closed (aiohttp's own default).
KEEPALIVE = 3630.0


#: Does aiohttp's handler show that it waits for a request (``aiohttp_idle``)? Without
#: that, the socket never answers once aiohttp has a connection and aiohttp keeps its own
#: idle timeout.
SEES_IDLE = "_waiter" in getattr(RequestHandler, "__slots__", ())


def aiohttp_idle(handler: Any) -> bool:
    """Has aiohttp answered everything it was given on this connection? Its handler
    waits for the next request (``_waiter``, as aiohttp's own keep-alive check reads it).
    An aiohttp without that attribute is never idle here: hits go its way, nothing else."""
    waiter = getattr(handler, "_waiter", None)
    return waiter is not None and not waiter.done() and not handler._messages


def whole_requests(data: bytes) -> bool:
    """Does ``data`` end where a request ends (requests without a body only)?"""
    if not data.endswith(_END):
        return False
    lower = data.lower()
    return b"content-length:" not in lower and b"transfer-encoding:" not in lower


class HitFirst(asyncio.Protocol):
    """One connection: hits are answered here whenever aiohttp has nothing of this
    connection's left to answer; everything else is aiohttp's. The connection's idle
    time is kept here (``KEEPALIVE``), since aiohttp does not see the hits."""

    __slots__ = ("inner", "answer", "transport", "address", "aiohttp_owns", "paused",
                 "loop", "last", "timer")

    def __init__(self, inner: Any, answer: Answerer) -> None:
        self.inner = inner  # aiohttp's RequestHandler
        self.answer = answer
        self.transport: Any = None
        self.address = "?"
        self.aiohttp_owns = False  # part of a request is with aiohttp: never back
        self.paused = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.last = 0.0
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.address = peer[0] if isinstance(peer, tuple) and peer else "?"
        self.inner.connection_made(transport)
        self.loop = asyncio.get_running_loop()
        self.last = self.loop.time()
        if SEES_IDLE:
            self.timer = self.loop.call_later(KEEPALIVE, self._close_if_idle)

    def data_received(self, data: bytes) -> None:
        self.last = self.loop.time()
        if not self.aiohttp_owns and not self.paused and aiohttp_idle(self.inner):
            try:
                out = self.answer(data, self.address)
            except Exception:  # a bug here must cost the fast path, not the connection
                log.exception("the socket's hit path failed; aiohttp answers instead")
                out = None
            if out is not None:
                self.transport.write(out)
                return
        if not whole_requests(data):
            self.aiohttp_owns = True
        self.inner.data_received(data)

    def _close_if_idle(self) -> None:
        idle_for = self.loop.time() - self.last
        if idle_for >= KEEPALIVE and aiohttp_idle(self.inner):
            self.transport.close()
        else:
            self.timer = self.loop.call_later(max(1.0, KEEPALIVE - idle_for), self._close_if_idle)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.paused = True
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.paused = False
        self.inner.resume_writing()


def _slow_way(data: bytes, address: str) -> None:
    """The answerer until ``build_app`` sets one: every request is aiohttp's."""
    return None


class _Server:
    """aiohttp's protocol factory, each protocol wrapped in ``HitFirst``."""

    def __init__(self, inner: Any, answer: Callable[[], Answerer | None]) -> None:
        self.inner = inner
        self.answer = answer

    def __call__(self) -> asyncio.Protocol:
        return HitFirst(self.inner(), self.answer() or _slow_way)

    def __getattr__(self, name: str) -> Any:  # shutdown, connections, ...
        return getattr(self.inner, name)


class _Runner(web_runner.AppRunner):
    def __init__(self, app: Any, answer: Callable[[], Answerer | None], **kwargs: Any):
        super().__init__(app, **kwargs)
        self.answer = answer

    async def _make_server(self) -> Any:
        return _Server(await super()._make_server(), self.answer)


class Web(AiohttpWeb):
    """Faust's aiohttp driver, with the socket's hit path in front of it. Until
    ``answerer`` is set (by ``build_app``) connections go to aiohttp alone."""

    answerer: Answerer | None = None

    def __init__(self, app: Any, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        # Idle connections are closed by ``HitFirst`` (KEEPALIVE), which sees the hits.
        idle = {"keepalive_timeout": KEEPALIVE * 1000} if SEES_IDLE else {}
        self._runner = _Runner(self.web_app, lambda: self.answerer, access_log=None, **idle)


DRIVERS.aliases["quotacache"] = f"{__name__}:Web"
