"""``python -m bench brokers`` runs the topology of docker-compose.yml: the same services
and worker environment, read from deploy/topology.toml, on Kafka and with Tansu in
Kafka's place. No broker is started here."""

import re
from pathlib import Path

import pytest
import yaml

from bench import brokers, trace
from quotacache.dev.compose import load_topology
from quotacache.settings import load_settings

COMPOSE = Path(__file__).resolve().parents[3] / "docker-compose.yml"
BROKER_KEYS = {"QUOTACACHE_BROKER__URL", "QUOTACACHE_BROKER__EMBEDDED_PORT"}


def compose_workers() -> dict[str, dict[str, str]]:
    """Each worker service of docker-compose.yml and its environment (defaults resolved)."""
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    workers = {}
    for name, spec in services.items():
        if spec.get("command", [None])[0] == "worker":
            env = {}
            for key, value in spec["environment"].items():
                default = re.fullmatch(r"\$\{\w+:-(.*)\}", str(value))
                env[key] = default.group(1) if default else str(value)
            workers[name] = env
    return workers


@pytest.fixture
def zipf():
    return trace.named("zipf", 7, None, None)


@pytest.fixture(autouse=True)
def no_keys_from_the_caller(monkeypatch):
    for name in load_topology().secrets:
        monkeypatch.delenv(name, raising=False)


def test_the_kafka_run_starts_the_compose_workers_with_the_compose_environment(tmp_path, zipf):
    stack = brokers.topology_stack("kafka", zipf, tmp_path)
    assert stack.topology == load_topology()
    workers = compose_workers()
    assert [name for name, _ in stack.topology.workers] == list(workers)
    env = stack.worker_env("kafka:9092", "upstream-sim:28080")  # the compose host names
    for compose_env in workers.values():
        assert env == compose_env


def test_the_tansu_run_changes_only_the_broker(tmp_path, zipf):
    env = brokers.topology_stack("tansu", zipf, tmp_path).worker_env("127.0.0.1:9092",
                                                                     "upstream-sim:28080")
    compose_env = next(iter(compose_workers().values()))
    assert {k: v for k, v in env.items() if k not in BROKER_KEYS} == {
        k: v for k, v in compose_env.items() if k not in BROKER_KEYS}
    assert env["QUOTACACHE_BROKER__URL"] == "embedded"
    assert env["QUOTACACHE_BROKER__EMBEDDED_PORT"] == "9092"


def test_the_bench_config_leaves_broker_and_simulator_to_the_topology(tmp_path, zipf,
                                                                       monkeypatch):
    stack = brokers.topology_stack("kafka", zipf, tmp_path)
    for key, value in stack.worker_env("127.0.0.1:39092", "127.0.0.1:38080").items():
        monkeypatch.setenv(key, value)
    assert stack.config is not None
    settings = load_settings(stack.config)
    assert settings.broker.url == "kafka://127.0.0.1:39092"
    assert settings.broker.partitions == brokers.PARTITIONS
    assert settings.services["cryptometer"].base_url == "http://127.0.0.1:38080"
    ticker = settings.services["cryptometer"].endpoints["ticker"]
    assert ticker.ttl == pytest.approx(zipf.ttls["ticker"], abs=1)  # the trace's TTLs


def test_group_joins_counts_generations_whichever_number_the_broker_starts_from(tmp_path):
    tansu, kafka = tmp_path / "tansu.log", tmp_path / "kafka.log"
    joined = "[INFO] Joined group 'bench' (generation {}) with member_id faust-0.15.3-x\n"
    tansu.write_text(joined.format(0) + "Successfully synced group bench with generation 0\n"
                     + joined.format(1))
    kafka.write_text(joined.format(1) + joined.format(2))
    assert brokers.group_joins([tansu]) == 2
    assert brokers.group_joins([kafka, tmp_path / "missing.log"]) == 2
