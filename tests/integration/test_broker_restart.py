"""The broker restarts under a running worker; each test has its own broker, so the
session's brokers and the other tests are not disturbed.

* The memory-only embedded broker comes back empty, as another cluster: the worker
  notices, discards its stale state, rebuilds and serves again.
* Real Kafka comes back with its data and the same cluster id (same data dir): the
  worker only reconnects. It keeps its data dir and its cache (no rebuild, no restart),
  and serves new keys again.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from quotacache.dev.broker import CLUSTER_ID_FILE, EmbeddedBroker, cluster_id, free_port

from .conftest import Deployment, local_kafka, poll

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def status(worker, key):
    try:
        return worker.get(f"/cache/cryptometer/{key}").json().get("status")
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


def test_a_restart_of_real_kafka_is_only_a_reconnect(tmp_path, simulator):
    kafka = local_kafka(tmp_path / "kafka")  # skips, saying why, without Java or Maven
    kafka.start()
    deployment = Deployment(tmp_path, kafka.bootstrap, simulator, embedded=False)
    try:
        worker = deployment.start_worker()
        pid = worker.child.pid
        poll(lambda: status(worker, "ticker/BTC") == "HIT", timeout=30,
             message="BTC cached before the restart")
        marker = worker.data_dir / CLUSTER_ID_FILE
        before = marker.read_text()
        cluster = asyncio.run(cluster_id(kafka.bootstrap))
        calls = simulator.stats()["accepted"]

        kafka.stop()
        kafka.start()  # the same data dir and port: Kafka keeps its topics and offsets
        restarted = time.monotonic()
        assert asyncio.run(cluster_id(kafka.bootstrap)) == cluster == kafka.cluster_id
        poll(lambda: status(worker, "ticker/ETH") == "HIT", timeout=60, interval=0.5,
             message="new keys fetched after the restart")
        recovery = time.monotonic() - restarted
        # Nothing was rebuilt: same process, same data dir, BTC still cached (no new call).
        assert status(worker, "ticker/BTC") == "HIT"
        assert simulator.stats()["accepted"] == calls + 1  # ETH only
        assert marker.read_text() == before
        assert worker.child.pid == pid and worker.child.alive()
        # A worker that restarts itself keeps its PID (exec): Faust's log says it started once.
        assert worker.child.log_tail(100_000).count("[^Worker]: Starting...") == 1
        print(f"\nKafka restart: worker serving new keys {recovery:.1f} s after the broker")
    finally:
        deployment.stop()
        kafka.stop()
