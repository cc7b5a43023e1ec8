"""The real-Kafka launcher's pure parts: Java versions, cache keys, cluster ids, and one
clear reason when Kafka cannot run."""

import pytest

from quotacache.dev import kafka_broker
from quotacache.dev.kafka_broker import KafkaUnavailable, _java_major, new_cluster_id


@pytest.mark.parametrize("text, major", [
    ('openjdk version "17.0.15" 2025-04-15', 17),
    ('java version "1.8.0_392"', 8),
    ('openjdk version "21-ea"', 21),
    ("no quotes", None),
])
def test_java_major_versions(text, major):
    assert _java_major(text) == major


def test_cluster_ids_never_start_with_a_dash():
    ids = [new_cluster_id() for _ in range(2000)]
    assert not any(i.startswith("-") for i in ids) and all(len(i) == 22 for i in ids)


def test_the_jar_cache_is_keyed_by_pom_and_java(tmp_path, monkeypatch):
    monkeypatch.setenv("QUOTACACHE_KAFKA_CACHE", str(tmp_path))
    versions = iter(['openjdk version "17.0.15"', 'openjdk version "21.0.2"'])
    monkeypatch.setattr(kafka_broker, "java_version", lambda java="java": next(versions))
    first, second = kafka_broker.jars_dir(), kafka_broker.jars_dir()
    assert first.parent == second.parent == tmp_path and first != second


def test_without_java_the_reason_is_one_line(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    reason = kafka_broker.unavailable_reason()
    assert reason is not None and "java not found" in reason and "\n" not in reason
    with pytest.raises(KafkaUnavailable):
        kafka_broker.ensure_jars()
