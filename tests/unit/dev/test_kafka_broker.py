"""The real-Kafka launcher's pure parts: cluster ids, and one clear reason when Kafka
cannot run."""

import pytest

from quotacache.dev import kafka_broker
from quotacache.dev.kafka_broker import KafkaUnavailable, new_cluster_id


def test_cluster_ids_never_start_with_a_dash():
    ids = [new_cluster_id() for _ in range(2000)]
    assert not any(i.startswith("-") for i in ids) and all(len(i) == 22 for i in ids)


def test_without_java_the_reason_is_one_line(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    reason = kafka_broker.unavailable_reason()
    assert reason is not None and "java not found" in reason and "\n" not in reason
    with pytest.raises(KafkaUnavailable):
        kafka_broker.ensure_jars()
