"""Hits answered at the socket: a plain GET of a hot key never reaches aiohttp.

Each connection's protocol looks at what arrives before aiohttp does. A chunk that is
exactly one complete ``GET /cache/...`` request of HTTP/1.1, with no body, no
``Connection`` other than keep-alive, no ``Expect``/``Upgrade`` and no peer header, for a
key whose encoded HIT answer is current (``hits.take``), is answered with those bytes
written straight to the transport: no request object, no middleware chain, no route.
The same guard applies first: 503 while starting and the per-address request limit
send the request the slow way, where the guard answers it.

Anything else (another route, a miss, a partial or pipelined chunk, a paused writer)
hands the connection to aiohttp for good, so answers can never overtake each other on
one connection. The answer's bytes, headers and counters are the hit middleware's
(``hits.py``): the two paths are one behaviour, this one costs a few microseconds.

Installed as Faust's web driver ``quotacache://`` (``faust_app`` sets it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

from aiohttp import web_runner
from aiohttp.http import SERVER_SOFTWARE
from faust.web.drivers import DRIVERS
from faust.web.drivers.aiohttp import Web as AiohttpWeb

from quotacache.web import hits
from quotacache.web.guard import PEER_HEADER

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


def answerer(take: Callable[[str], tuple[bytes, int] | None],
             allowed: Callable[[str], bool]) -> Answerer:
    """Answers for the socket: ``take(key)`` is ``hits.take`` on the runtime, ``allowed``
    the guard's readiness and request limit for a client address."""
    date = _Date()

    def answer(data: bytes, address: str) -> bytes | None:
        target = hot_target(data)
        if target is None:
            return None
        key, _, query = target.partition("?")
        if not hits.plain_query(query) or not allowed(address):
            return None
        found = take(key)
        if found is None:
            return None
        body, age = found
        return b"".join((_HEAD, str(age).encode(), b"\r\nContent-Length: ",
                         str(len(body)).encode(), b"\r\nDate: ", date.now(),
                         b"\r\nServer: ", _SERVER, b"\r\n\r\n", body))

    return answer


class HitFirst(asyncio.Protocol):
    """One connection: hits answered here until anything else arrives, then aiohttp's."""

    __slots__ = ("inner", "answer", "transport", "address", "handed", "paused")

    def __init__(self, inner: Any, answer: Answerer) -> None:
        self.inner = inner  # aiohttp's RequestHandler
        self.answer = answer
        self.transport: Any = None
        self.address = "?"
        self.handed = False
        self.paused = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.address = peer[0] if isinstance(peer, tuple) and peer else "?"
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if not self.handed:
            if not self.paused:
                out = self.answer(data, self.address)
                if out is not None:
                    self.transport.write(out)
                    return
            self.handed = True
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.paused = True  # a client that does not read is served the slow way
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class _Server:
    """aiohttp's protocol factory, each protocol wrapped in ``HitFirst``."""

    def __init__(self, inner: Any, answer: Callable[[], Answerer | None]) -> None:
        self.inner = inner
        self.answer = answer

    def __call__(self) -> asyncio.Protocol:
        protocol = self.inner()
        answer = self.answer()
        return protocol if answer is None else HitFirst(protocol, answer)

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
        self._runner = _Runner(self.web_app, lambda: self.answerer, access_log=None)


DRIVERS.aliases["quotacache"] = f"{__name__}:Web"
