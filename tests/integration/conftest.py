"""Integration fixtures: one embedded broker per session, a simulator and workers per test.

Every test gets its own app id, topic prefix, data dirs and ports; every process is
started here and stopped by PID afterwards. With ``KAFKA_BOOTSTRAP_SERVERS`` set the
tests run against that Kafka instead of the embedded broker; with
``QUOTACACHE_TEST_KAFKA=docker``, against a Kafka container (testcontainers).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from quotacache.dev.broker import EmbeddedBroker, free_port
from quotacache.dev.processes import ChildProcess, start_simulator, start_worker
from quotacache.settings import Settings, load_settings

API_KEY = "sk-integration-5e1f0c2a"
pytestmark = pytest.mark.integration


@contextlib.contextmanager
def kafka_container():
    """A real Kafka in Docker (testcontainers); skips, saying why, when no engine answers."""
    try:
        from docker.errors import DockerException
        from testcontainers.kafka import KafkaContainer
    except ImportError as exc:
        pytest.skip(f"testcontainers is not installed ({exc})")
    try:
        container = KafkaContainer()
    except DockerException as exc:
        pytest.skip(f"no Docker engine answers, so no real Kafka to test against: {exc}")
    with container:
        yield container.get_bootstrap_server()


@pytest.fixture(scope="session")
def bootstrap(tmp_path_factory) -> str:
    """The broker of every integration test: ``KAFKA_BOOTSTRAP_SERVERS`` when set, a Kafka
    container with ``QUOTACACHE_TEST_KAFKA=docker``, else the embedded broker."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    if os.environ.get("QUOTACACHE_TEST_KAFKA") == "docker":
        with kafka_container() as url:
            yield url
        return
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    broker = EmbeddedBroker(free_port(), log_path=log).start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


class Simulator:
    def __init__(self, child: ChildProcess, port: int):
        self.child = child
        self.url = f"http://127.0.0.1:{port}"

    def stats(self, log: bool = False) -> dict[str, Any]:
        return httpx.get(f"{self.url}/_sim/stats", params={"log": "1"} if log else None).json()

    def configure(self, **changes: Any) -> None:
        httpx.post(f"{self.url}/_sim/config", json=changes).raise_for_status()


@pytest.fixture
def simulator(tmp_path) -> Simulator:
    port = free_port()
    child = start_simulator(port, latency="0.01-0.03", log_path=tmp_path / "sim.log")
    try:
        yield Simulator(child, port)
    finally:
        child.stop()


class Worker:
    def __init__(self, child: ChildProcess, port: int, data_dir: Path):
        self.child = child
        self.port = port
        self.data_dir = data_dir
        self.url = f"http://127.0.0.1:{port}"

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(self.url + path, timeout=10.0, **kwargs)

    def stats(self) -> dict[str, Any]:
        return self.get("/stats").json()


class Deployment:
    """One test's quotacache: config file, settings, workers, and helpers to talk to them."""

    def __init__(self, tmp_path: Path, bootstrap: str, simulator: Simulator,
                 embedded: bool | None = None):
        self.tmp_path = tmp_path
        self.bootstrap = bootstrap
        #: Whether the broker is the embedded Tansu (compat layer on) or a real Kafka.
        self.embedded = embedded if embedded is not None else not (
            os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
            or os.environ.get("QUOTACACHE_TEST_KAFKA") == "docker")
        self.simulator = simulator
        self.app_id = f"t{uuid.uuid4().hex[:8]}"
        self.workers: list[Worker] = []
        self.config_path = tmp_path / "quotacache.toml"
        self.configure()

    def configure(self, extra: str = "", base_url: str | None = None) -> Settings:
        port = self.bootstrap.rsplit(":", 1)[1]
        broker = (f'url = "embedded"\nembedded_port = {port}' if self.embedded
                  else f'url = "kafka://{self.bootstrap}"')
        self.config_path.write_text(f"""
app_id = "{self.app_id}"
topic_prefix = "{self.app_id}."
profiles = ["cryptometer"]
[broker]
{broker}
partitions = 4
[cache]
sweep_interval = "1s"
[services.cryptometer]
base_url = "{base_url or self.simulator.url}"
{extra}
""")
        self.settings = load_settings(self.config_path)
        return self.settings

    def start_worker(self, name: str = "w1", *, data_dir: Path | None = None,
                     wait: bool = True) -> Worker:
        port = free_port()
        data_dir = data_dir or self.tmp_path / f"data-{name}"
        child = start_worker(self.config_path, port, log_path=self.tmp_path / f"{name}.log",
                             env={"CRYPTOMETER_API_KEY": API_KEY,
                                  "QUOTACACHE_DATA_DIR": str(data_dir)},
                             wait=wait)
        worker = Worker(child, port, data_dir)
        self.workers.append(worker)
        return worker

    def topic(self, name: str) -> str:
        return self.settings.topic_prefix + name

    async def produce(self, topic: str, messages: list[tuple[bytes | None, bytes]]) -> None:
        await self.produce_to([(topic, key, value) for key, value in messages])

    async def produce_to(self, messages: list[tuple[str, bytes | None, bytes]]) -> None:
        """Send (topic, key, value) messages in order, then flush."""
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5)
        await producer.start()
        try:
            for topic, key, value in messages:
                await producer.send(topic, value=value, key=key)
            await producer.flush()
        finally:
            await producer.stop()

    async def consume(self, topic: str, count: int, timeout: float = 30.0) -> list[Any]:
        """The first ``count`` records of ``topic`` (raises if they do not arrive in time)."""
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=self.bootstrap,
                                    auto_offset_reset="earliest", group_id=None)
        await consumer.start()
        records: list[Any] = []
        try:
            deadline = time.monotonic() + timeout
            while len(records) < count and time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=200)
                for messages in batch.values():
                    records.extend(messages)
        finally:
            await consumer.stop()
        assert len(records) >= count, f"{len(records)} of {count} records on {topic}"
        return records

    async def consume_all(self, match: Callable[[str], bool]) -> list[Any]:
        """Every record of every topic whose name ``match`` accepts, from the beginning,
        until the topics stay quiet for 1.5 s."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None,
                                    auto_offset_reset="earliest")
        await consumer.start()
        try:
            topics = [t for t in await consumer.topics() if match(t)]
            partitions = [TopicPartition(t, p) for t in topics
                          for p in consumer.partitions_for_topic(t) or ()]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            seen: list[Any] = []
            idle = 0
            while idle < 3:
                batch = await consumer.getmany(timeout_ms=500)
                idle = 0 if batch else idle + 1
                for records in batch.values():
                    seen += records
            return seen
        finally:
            await consumer.stop()

    def stop(self) -> None:
        for worker in self.workers:
            worker.child.stop()


@pytest.fixture
def deployment(tmp_path, bootstrap, simulator) -> Deployment:
    deployed = Deployment(tmp_path, bootstrap, simulator)
    try:
        yield deployed
    finally:
        deployed.stop()


def _attempts(timeout: float, interval: float):
    """Yield until ``timeout`` has passed, ``interval`` apart (the caller sleeps)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        yield interval


def poll(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05,
         message: str = "condition") -> Any:
    """Call ``predicate`` until it returns something truthy; fail after ``timeout``."""
    last: Any = None
    for pause in _attempts(timeout, interval):
        last = predicate()
        if last:
            return last
        time.sleep(pause)
    raise AssertionError(f"{message} not reached in {timeout}s (last: {last!r})")


async def apoll(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05,
                message: str = "condition") -> Any:
    """``poll`` for async tests: sleeps without blocking the event loop."""
    last: Any = None
    for pause in _attempts(timeout, interval):
        last = predicate()
        if last:
            return last
        await asyncio.sleep(pause)
    raise AssertionError(f"{message} not reached in {timeout}s (last: {last!r})")


def json_key(key: str) -> bytes:
    return json.dumps(key).encode()
