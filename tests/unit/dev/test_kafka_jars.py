"""Where the Kafka jars come from: Java versions, and a cache keyed by pom and Java."""

import pytest

from quotacache.dev import kafka_jars
from quotacache.dev.kafka_jars import _java_major


@pytest.mark.parametrize("text, major", [
    ('openjdk version "17.0.15" 2025-04-15', 17),
    ('java version "1.8.0_392"', 8),
    ('openjdk version "21-ea"', 21),
    ("no quotes", None),
])
def test_java_major_versions(text, major):
    assert _java_major(text) == major


def test_the_jar_cache_is_keyed_by_pom_and_java(tmp_path, monkeypatch):
    monkeypatch.setenv("QUOTACACHE_KAFKA_CACHE", str(tmp_path))
    versions = iter(['openjdk version "17.0.15"', 'openjdk version "21.0.2"'])
    monkeypatch.setattr(kafka_jars, "java_version", lambda java="java": next(versions))
    first, second = kafka_jars.jars_dir(), kafka_jars.jars_dir()
    assert first.parent == second.parent == tmp_path and first != second
