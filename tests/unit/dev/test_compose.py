"""docker-compose.yml cannot run here (no Docker engine); keep it valid and consistent."""

from pathlib import Path

import yaml

from quotacache.settings import load_settings

COMPOSE = Path(__file__).resolve().parents[3] / "docker-compose.yml"


def test_compose_runs_kafka_in_kraft_mode_two_workers_and_the_simulator(monkeypatch):
    spec = yaml.safe_load(COMPOSE.read_text())
    services = spec["services"]
    assert {"kafka", "worker1", "worker2", "upstream-sim"} <= set(services)
    assert "controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
    for name in ("worker1", "worker2"):
        worker = services[name]
        assert worker["command"][0] == "worker"
        for port in worker["ports"]:
            assert port.startswith("127.0.0.1:")
        for key, value in worker["environment"].items():
            if key.startswith("QUOTACACHE_"):
                monkeypatch.setenv(key, str(value))
        settings = load_settings()  # the workers' environment is a valid configuration
        assert settings.broker.url == "kafka://kafka:9092"
