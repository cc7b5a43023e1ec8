"""``quotacache demo``, the README's main command: it runs the whole stack under load,
prints its figures, and leaves no process behind, whether it ends by itself or is
stopped with SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from quotacache.dev.broker import free_port
from quotacache.dev.processes import process_tree

from .conftest import poll

pytestmark = pytest.mark.integration


def demo(out: Path, *args: str) -> subprocess.Popen:
    ports = ["--web-port", str(free_port()), "--sim-port", str(free_port()),
             "--broker-port", str(free_port())]
    with open(out, "wb") as sink:
        return subprocess.Popen([sys.executable, "-m", "quotacache", "demo", *ports, *args],
                                stdout=sink, stderr=subprocess.STDOUT,
                                env={**os.environ, "COLUMNS": "120"})


def alive(pids: set[int]) -> set[int]:
    living = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            living.add(pid)
    return living


def stack_of(process: subprocess.Popen) -> set[int]:
    """The demo's broker, simulator and worker, once all three run."""
    def three() -> set[int] | None:
        found = set(process_tree(process.pid)) - {process.pid}
        return found if len(found) >= 3 else None

    return poll(three, timeout=60, interval=0.2,
                message="the demo's broker, simulator and worker")


def test_the_demo_runs_its_load_prints_figures_and_stops_everything(tmp_path):
    process = demo(tmp_path / "out", "--duration", "8", "--rate", "20")
    children = stack_of(process)
    assert process.wait(timeout=120) == 0, (tmp_path / "out").read_text()[-3000:]
    text = (tmp_path / "out").read_text(errors="replace")
    assert "worker ready in" in text and "upstream calls (worker)" in text, text[-3000:]
    poll(lambda: not alive(children), timeout=20, message="the demo's processes gone")


def test_sigterm_stops_the_demo_and_every_process_it_started(tmp_path):
    """Even when an impatient operator sends it twice."""
    process = demo(tmp_path / "out", "--rate", "20")
    children = stack_of(process)
    poll(lambda: "worker ready in" in (tmp_path / "out").read_text(errors="replace"),
         timeout=60, message="the demo running its load")
    process.send_signal(signal.SIGTERM)
    time.sleep(0.5)  # the clean-up is under way
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    poll(lambda: not alive(children), timeout=20, message="the demo's processes gone")
