"""Integration fixtures: brokers per session, a simulator and workers per test.

Every test gets its own app id, topic prefix, data dirs and ports; every process is
started here and stopped by PID afterwards. Tests run on the embedded broker (Tansu);
tests marked ``both_brokers`` run twice, as ``[tansu]`` and ``[kafka]``: the second time
on a real Apache Kafka (KRaft, from the jars ``make`` fetches; skipped, with the reason,
where Java or Maven Central is missing). What differs between the two is in docs/BROKERS.md.

``QUOTACACHE_TEST_KAFKA`` moves every other test to real Kafka as well: ``local`` (the
jar broker), ``docker`` (a Kafka container, testcontainers); ``KAFKA_BOOTSTRAP_SERVERS``
names an external Kafka for every test (and for the ``[kafka]`` runs).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from quotacache.client.replica import partitions_of
from quotacache.dev.broker import EmbeddedBroker, free_port
from quotacache.dev.kafka_broker import KafkaBroker, KafkaUnavailable, ensure_jars
from quotacache.dev.processes import ChildProcess, start_simulator, start_worker
from quotacache.settings import Settings, load_settings

from ..polling import apoll, poll  # noqa: F401  (the integration tests import them from here)

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


@dataclass(frozen=True)
class BrokerUnderTest:
    """A broker the integration tests run on: ``tansu`` (embedded) or a real Kafka."""

    name: str  # tansu | kafka | external | docker
    bootstrap: str
    #: The local Kafka's storage (its log segments can be read), else None.
    data_dir: Path | None = None

    @property
    def embedded(self) -> bool:
        """The embedded broker: workers start it and use the Tansu compatibility layer."""
        return self.name == "tansu"


def kafka_choice() -> str | None:
    """Where real Kafka comes from: an external one, a container, or the local jars."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return "external"
    return {"docker": "docker", "local": "kafka"}.get(os.environ.get("QUOTACACHE_TEST_KAFKA",
                                                                     ""))


def local_kafka(data_dir: Path) -> KafkaBroker:
    """A real Kafka from the jars (fetched now if ``make`` did not); skips, in one line,
    where Java or Maven Central is missing."""
    try:
        return KafkaBroker(ensure_jars(), data_dir)
    except KafkaUnavailable as exc:
        pytest.skip(f"no real Kafka here: {exc}")


@pytest.fixture(scope="session")
def tansu_broker(tmp_path_factory) -> Iterator[BrokerUnderTest]:
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    broker = EmbeddedBroker(free_port(), log_path=log).start()
    try:
        yield BrokerUnderTest("tansu", broker.bootstrap)
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory) -> Iterator[BrokerUnderTest]:
    """One real Kafka per test node, started on first use (only nodes that run a Kafka
    test pay for its JVM)."""
    choice = kafka_choice() or "kafka"
    if choice == "external":
        yield BrokerUnderTest("external", os.environ["KAFKA_BOOTSTRAP_SERVERS"])
        return
    if choice == "docker":
        with kafka_container() as url:
            yield BrokerUnderTest("docker", url)
        return
    broker = local_kafka(tmp_path_factory.mktemp("kafka"))
    try:
        broker.start()
    except KafkaUnavailable as exc:
        pytest.fail(f"the real Kafka did not start: {exc}")
    try:
        yield BrokerUnderTest("kafka", broker.bootstrap, broker.data_dir)
    finally:
        broker.stop()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked ``both_brokers`` run on the embedded broker and on real Kafka."""
    if "broker" in metafunc.fixturenames and metafunc.definition.get_closest_marker(
            "both_brokers"):
        metafunc.parametrize("broker", ["tansu", "kafka"], indirect=True)


@pytest.fixture
def broker(request) -> BrokerUnderTest:
    """This test's broker: its ``both_brokers`` parameter, else the default (Tansu, or
    real Kafka everywhere with ``QUOTACACHE_TEST_KAFKA`` / ``KAFKA_BOOTSTRAP_SERVERS``)."""
    name = getattr(request, "param", None) or ("kafka" if kafka_choice() else "tansu")
    return request.getfixturevalue("tansu_broker" if name == "tansu" else "kafka_broker")


@pytest.fixture
def bootstrap(broker) -> str:
    return broker.bootstrap


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
                 embedded: bool = True):
        self.tmp_path = tmp_path
        self.bootstrap = bootstrap
        #: Whether the broker is the embedded Tansu (compat layer on) or a real Kafka.
        self.embedded = embedded
        self.simulator = simulator
        self.app_id = f"t{uuid.uuid4().hex[:8]}"
        self.workers: list[Worker] = []
        self.config_path = tmp_path / "quotacache.toml"
        self.configure()

    def configure(self, extra: str = "", base_url: str | None = None,
                  broker_extra: str = "", partitions: int = 4) -> Settings:
        """Write the config: ``extra`` goes under [services.cryptometer], ``broker_extra``
        under [broker]."""
        port = self.bootstrap.rsplit(":", 1)[1]
        broker = (f'url = "embedded"\nembedded_port = {port}' if self.embedded
                  else f'url = "kafka://{self.bootstrap}"')
        broker += "\n" + broker_extra
        if self.embedded and "rotate_broker_mb" not in broker_extra:
            # The session's broker holds every test's records: its memory is not this
            # test's doing (tests/integration/test_rotation.py sets its own).
            broker += "\nrotate_broker_mb = 0"
        self.config_path.write_text(f"""
app_id = "{self.app_id}"
topic_prefix = "{self.app_id}."
profiles = ["cryptometer"]
[broker]
{broker}
partitions = {partitions}
[cache]
sweep_interval = "1s"
[services.cryptometer]
base_url = "{base_url or self.simulator.url}"
{extra}
""")
        self.settings = load_settings(self.config_path)
        return self.settings

    def start_worker(self, name: str = "w1", *, data_dir: Path | None = None,
                     wait: bool = True, api_key: str = API_KEY,
                     env: dict[str, str] | None = None) -> Worker:
        port = free_port()
        data_dir = data_dir or self.tmp_path / f"data-{name}"
        child = start_worker(self.config_path, port, log_path=self.tmp_path / f"{name}.log",
                             env={"CRYPTOMETER_API_KEY": api_key,
                                  "QUOTACACHE_DATA_DIR": str(data_dir), **(env or {})},
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
            partitions = await partitions_of(self.bootstrap, topics)
            assert partitions, f"no partitions of {topics}"
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
def deployment(tmp_path, broker, simulator) -> Deployment:
    deployed = Deployment(tmp_path, broker.bootstrap, simulator, embedded=broker.embedded)
    try:
        yield deployed
    finally:
        deployed.stop()


def json_key(key: str) -> bytes:
    return json.dumps(key).encode()
