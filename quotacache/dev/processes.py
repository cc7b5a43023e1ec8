"""Child processes of the demo and the tests: workers and the simulator, stopped by PID.

Each child gets its own process group, so stopping it also stops anything it started.
Readiness is polled with a deadline, never slept for.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from quotacache.errors import QuotacacheError


class ChildProcess:
    """A quotacache sub-command running as a child, with its output in a log file."""

    def __init__(self, args: list[str], *, env: dict[str, str] | None = None,
                 log_path: Path | None = None):
        self.args = args
        self.log_path = log_path
        out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "quotacache", *args], env={**os.environ, **(env or {})},
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_http(self, url: str, timeout: float, *, expect: int = 200) -> None:
        """Poll ``url`` until it answers ``expect``; raise with the log's tail if it does not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise QuotacacheError(f"{self.args[0]} exited ({self.process.returncode}):\n"
                                      f"{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=1.0).status_code == expect:
                    return
            time.sleep(0.1)
        raise QuotacacheError(f"{url} not ready in {timeout:.0f}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path or not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL the whole process group (a crash, for fault tests)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self, timeout: float = 15.0) -> None:
        if not self.alive():
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()


def start_simulator(port: int, *, latency: str = "0.2-0.5", log_path: Path | None = None,
                    timeout: float = 20.0) -> ChildProcess:
    child = ChildProcess(["upstream-sim", "--port", str(port), "--latency", latency],
                         log_path=log_path)
    _wait_or_stop(child, f"http://127.0.0.1:{port}/_sim/stats", timeout)
    return child


def start_worker(config_path: Path, web_port: int, *, log_path: Path | None = None,
                 env: dict[str, str] | None = None, timeout: float = 60.0,
                 wait: bool = True) -> ChildProcess:
    child = ChildProcess(["worker", "--config", str(config_path), "--web-port", str(web_port),
                          "-l", "info"], env=env, log_path=log_path)
    if wait:
        _wait_or_stop(child, f"http://127.0.0.1:{web_port}/health", timeout)
    return child


def _wait_or_stop(child: ChildProcess, url: str, timeout: float) -> None:
    """Wait until ``child`` is ready; stop it if it is not (the caller never gets it, so
    nobody else could)."""
    try:
        child.wait_http(url, timeout)
    except BaseException:
        child.stop()
        raise


def process_tree(pid: int) -> list[int]:
    """``pid`` and every descendant (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree
