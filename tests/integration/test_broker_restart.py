"""The memory-only embedded broker restarts (empty, as another cluster): the worker
notices, discards its stale state, rebuilds and serves again. Its own broker, so the
session's broker and the other tests are not disturbed."""

from __future__ import annotations

import time

import httpx
import pytest

from quotacache.dev.broker import CLUSTER_ID_FILE, EmbeddedBroker, free_port

from .conftest import Deployment, poll

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def status(worker, key):
    try:
        return worker.get(f"/cache/cryptometer/{key}").json()["status"]
    except (httpx.HTTPError, ValueError):
        return None


def test_workers_rebuild_after_the_embedded_broker_restarts_empty(tmp_path, simulator):
    port = free_port()
    broker = EmbeddedBroker(port, log_path=tmp_path / "broker-1.log").start()
    deployment = Deployment(tmp_path, broker.bootstrap, simulator, embedded=True)
    try:
        worker = deployment.start_worker()
        pid = worker.child.pid
        poll(lambda: status(worker, "ticker/BTC") == "HIT", timeout=30,
             message="BTC cached before the restart")
        marker = worker.data_dir / CLUSTER_ID_FILE
        before = marker.read_text()

        broker.stop()
        broker = EmbeddedBroker(port, log_path=tmp_path / "broker-2.log").start()
        restarted = time.monotonic()
        # The worker restarts itself (same PID) on the new, empty cluster; its old
        # entries went with the old broker, so BTC is a miss, then fetched again.
        poll(lambda: marker.read_text() != before, timeout=30, interval=0.2,
             message="stale data dir discarded for the new cluster")
        worker.child.wait_http(worker.url + "/health", timeout=60)  # ready again
        poll(lambda: status(worker, "ticker/ETH") == "HIT", timeout=30, interval=0.5,
             message="new keys fetched after the restart")
        recovery = time.monotonic() - restarted
        assert worker.child.pid == pid and worker.child.alive()
        print(f"\nbroker restart: worker serving again after {recovery:.1f} s")
    finally:
        deployment.stop()
        broker.stop()
