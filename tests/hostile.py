"""A hostile upstream for tests: huge bodies, zip bombs, bytes that dribble, echoed keys,
4xx.

It runs an aiohttp server on loopback in a thread of its own and answers every path the
same way, as ``mode`` says; ``calls`` counts what it received.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import zlib
from collections.abc import Iterator

from aiohttp import web

from quotacache.dev.broker import free_port


class HostileUpstream:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.mode = "ok"
        self.calls = 0
        #: Each call's path and query as they came (raw: still URL-encoded).
        self.urls: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()

    async def answer(self, request: web.Request) -> web.StreamResponse:
        self.calls += 1
        self.urls.append(request.raw_path)
        mode = self.mode
        if mode == "huge":  # 400 MB, chunked, as fast as the reader takes it
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            chunk = b" " * (1 << 20)
            with contextlib.suppress(ConnectionError, RuntimeError):
                for _ in range(400):
                    await response.write(chunk)
            return response
        if mode == "gzip_bomb":  # 200 KB on the wire, 200 MB once inflated
            return web.Response(body=gzip_bomb(), headers={
                "Content-Type": "application/json", "Content-Encoding": "gzip"})
        if mode == "drip":  # one byte every 2 s, for ever
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            with contextlib.suppress(ConnectionError, RuntimeError):
                for _ in range(1000):
                    await response.write(b" ")
                    await asyncio.sleep(2)
            return response
        if mode == "echo":  # the request URL, key and all, in the data
            body = {"success": "true", "error": "false",
                    "data": {"you_asked": str(request.url), "query": dict(request.query)}}
            return web.json_response(body)
        if mode == "echo_error":
            body = {"success": "false", "error": f"bad request {request.url}"}
            return web.json_response(body)
        if mode == "404":
            return web.json_response({"error": "no such thing"}, status=404)
        return web.json_response({"success": "true", "error": "false", "data": {"p": 1}})

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self.answer)
        runner = web.AppRunner(app)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())

    @contextlib.contextmanager
    def running(self) -> Iterator[HostileUpstream]:
        thread = threading.Thread(target=self._run, daemon=True)
        thread.start()
        self._ready.wait(10)
        try:
            yield self
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            thread.join(10)


@functools.cache
def gzip_bomb(inflated: int = 200 << 20) -> bytes:
    """A gzip body of ``inflated`` spaces (a thousand times smaller on the wire)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b" " * (1 << 20)
    return b"".join(packer.compress(block) for _ in range(inflated >> 20)) + packer.flush()
