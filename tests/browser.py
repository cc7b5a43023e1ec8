"""Headless Chromium for the dashboard's browser tests: driven over the DevTools protocol
(``Browser``), or run once the way a person would take a screenshot (``first_paint``).

Debian's ``chromium`` is started with the flags this machine needs (no sandbox as root,
no GPU, no background networking: the network is closed) and its own empty profile, in
its own process group so stopping it by PID stops its helpers too. The protocol is
spoken over aiohttp's WebSocket client: no driver package is needed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp

PLAIN = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
FLAGS = [*PLAIN, "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0"]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def first_paint(url: str, profile: Path, screenshot: Path, size: tuple[int, int] = (1280, 900),
                timeout: float = 60.0) -> str:
    """``chromium --headless --screenshot --dump-dom``: Chromium loads ``url``, waits for
    nothing but its own load event, writes a PNG of the window to ``screenshot`` and
    returns the DOM as it then stands (scripts run, no event stream or timer awaited)."""
    binary = chromium_path()
    assert binary, "chromium is not installed"
    process = subprocess.Popen(
        [binary, *PLAIN, f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}",
         f"--screenshot={screenshot}", "--dump-dom", url],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        dom, _ = process.communicate(timeout=timeout)  # its helpers hold stdout till they end
    except BaseException:  # stuck or interrupted: stop it and its helpers (not reaped yet)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
        raise
    assert process.returncode == 0, f"chromium exited with {process.returncode}"
    assert screenshot.exists(), "chromium wrote no screenshot"
    return dom.decode(errors="replace")


class Browser:
    """One Chromium with one page, opened at ``url``."""

    def __init__(self, url: str, profile: Path, size: tuple[int, int] = (1400, 1100)):
        self.url = url
        self.profile = profile
        self.size = size
        self.process: subprocess.Popen[bytes] | None = None
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.ids = itertools.count(1)

    async def __aenter__(self) -> Browser:
        binary = chromium_path()
        assert binary, "chromium is not installed"
        self.process = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={self.profile}",
             f"--window-size={self.size[0]},{self.size[1]}", self.url],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            port = await self._devtools_port(timeout=30.0)
            self.session = aiohttp.ClientSession()
            target = await self._page_target(port, timeout=10.0)
            self.ws = await self.session.ws_connect(target["webSocketDebuggerUrl"],
                                                    max_msg_size=0)
            await self._loaded(timeout=30.0)
        except BaseException:
            await self.__aexit__()  # never leave a browser behind
            raise
        return self

    async def _loaded(self, timeout: float) -> None:
        """Wait until the page at ``url`` (not the blank start page) has loaded."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = await self.evaluate("[location.href, document.readyState]")
            if state[0].startswith(self.url) and state[1] == "complete":
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{self.url} did not load in {timeout}s")

    async def __aexit__(self, *exc: Any) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.session is not None:
            await self.session.close()
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    async def _devtools_port(self, timeout: float) -> int:
        """Chromium writes the port it chose into the profile's DevToolsActivePort."""
        marker = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process and self.process.poll() is None, "chromium exited"
            with contextlib.suppress(FileNotFoundError, ValueError):
                return int(marker.read_text().split()[0])
            await asyncio.sleep(0.1)
        raise AssertionError(f"chromium did not open its DevTools port in {timeout}s")

    async def _page_target(self, port: int, timeout: float) -> dict[str, Any]:
        assert self.session
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            async with self.session.get(f"http://127.0.0.1:{port}/json/list") as response:
                pages = [t for t in await response.json() if t.get("type") == "page"]
            if pages:
                return pages[0]
            await asyncio.sleep(0.1)
        raise AssertionError("chromium opened no page")

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one DevTools command and return its result (events in between are skipped)."""
        assert self.ws
        ident = next(self.ids)
        await self.ws.send_json({"id": ident, "method": method, "params": params})
        while True:
            message = await self.ws.receive(timeout=30)
            if message.type is not aiohttp.WSMsgType.TEXT:
                raise AssertionError(f"DevTools connection ended: {message.type}")
            answer = json.loads(message.data)
            if answer.get("id") == ident:
                if "error" in answer:
                    raise AssertionError(f"{method}: {answer['error']}")
                return answer.get("result", {})

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-serializable)."""
        result = await self.call("Runtime.evaluate", expression=expression,
                                 returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def screenshot(self, path: Path) -> Path:
        result = await self.call("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(result["data"]))
        return path
