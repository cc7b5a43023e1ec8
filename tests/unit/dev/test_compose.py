"""docker-compose.yml cannot run here (no Docker engine): keep it valid, and in step with
deploy/topology.toml, which quotacache.dev.compose runs without Docker."""

import re
from pathlib import Path

import yaml

from quotacache.dev.compose import load_topology
from quotacache.dev.kafka_jars import KAFKA_VERSION, POM
from quotacache.settings import load_settings

COMPOSE = Path(__file__).resolve().parents[3] / "docker-compose.yml"
#: Kafka settings that depend on where it runs (container network or loopback).
LISTENER_SETTINGS = {"listeners", "advertised.listeners", "controller.listener.names",
                     "listener.security.protocol.map", "controller.quorum.voters"}


def services():
    return yaml.safe_load(COMPOSE.read_text())["services"]  # resolves the << merges


def test_compose_runs_kafka_in_kraft_mode_two_workers_and_the_simulator(monkeypatch):
    spec = services()
    assert {"kafka", "worker1", "worker2", "upstream-sim"} <= set(spec)
    assert "controller" in spec["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
    for name in ("worker1", "worker2"):
        worker = spec[name]
        assert worker["command"][0] == "worker"
        for port in worker["ports"]:
            assert port.startswith("127.0.0.1:")
        for key, value in worker["environment"].items():
            if key.startswith("QUOTACACHE_"):
                monkeypatch.setenv(key, str(value))
        settings = load_settings()  # the workers' environment is a valid configuration
        assert settings.broker.url == "kafka://kafka:9092"


def test_compose_and_the_python_topology_have_the_same_services_and_settings():
    topo, spec = load_topology(), services()
    kafka, simulator = topo.kafka_service, topo.simulator_service
    assert set(spec) == {kafka, simulator, *(name for name, _ in topo.workers)}
    # One Kafka version: the image, the jars of the tests, the topology.
    assert spec[kafka]["image"] == f"apache/kafka:{topo.kafka_version}"
    assert topo.kafka_version == KAFKA_VERSION
    assert f"<kafka.version>{KAFKA_VERSION}</kafka.version>" in POM.read_text()
    # Broker settings: KAFKA_<NAME> in the compose file, besides the listeners.
    env = {key.removeprefix("KAFKA_").lower().replace("_", "."): str(value)
           for key, value in spec[kafka]["environment"].items()}
    assert {k: v for k, v in env.items() if k not in LISTENER_SETTINGS} == topo.kafka_settings
    assert f"PLAINTEXT://{kafka}:{topo.kafka_port}" in env["advertised.listeners"]
    # The simulator's port.
    command = spec[simulator]["command"]
    assert command[0] == "upstream-sim"
    assert command[command.index("--port") + 1] == str(topo.simulator_port)
    # Each worker: its web port and host, and the one environment.
    expected_env = topo.env_for(f"{kafka}:{topo.kafka_port}",
                                f"{simulator}:{topo.simulator_port}")
    for name, web_port in topo.workers:
        worker = spec[name]
        command = worker["command"]
        assert command[command.index("--web-port") + 1] == str(web_port)
        assert command[command.index("--web-host") + 1] == name
        assert worker["ports"] == [f"127.0.0.1:{web_port}:{web_port}"]
        assert set(worker["depends_on"]) == {kafka, simulator}
        compose_env = {}
        for key, value in worker["environment"].items():
            default = re.fullmatch(r"\$\{(\w+):-(.*)\}", str(value))
            compose_env[key] = default.group(2) if default else str(value)
            if default:
                assert default.group(1) == key  # a key comes from the same variable
        secrets = {name: topo.secret_default for name in topo.secrets}
        assert compose_env == {**expected_env, **secrets}
