"""What real Kafka guarantees beyond the embedded broker, checked on real Kafka only
(Tansu records topic configs but enforces none of them, and has no idempotent producer):

* every topic quotacache creates has the retention its settings ask for, as Kafka itself
  reports it (describe_configs), and Faust's table changelogs are compacted;
* the workers produce with the idempotent producer: the record batches Kafka stored carry
  a producer id, where a plain producer's carry none (-1).
"""

from __future__ import annotations

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.record.memory_records import MemoryRecords

from .conftest import BrokerUnderTest, Deployment, apoll, json_key

pytestmark = pytest.mark.integration

DATA_RETENTION_MS = 3 * 86400 * 1000
REQUEST_RETENTION_MS = 2 * 3600 * 1000


async def topic_configs(bootstrap: str, topics: list[str]) -> dict[str, dict[str, str]]:
    """Each topic's configs as the broker reports them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic) for topic in topics])
    finally:
        await admin.close()
    return {resource[3]: {entry[0]: entry[1] for entry in resource[4]}
            for response in responses for resource in response.resources}


async def topics_of(bootstrap: str, prefix: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return sorted(t for t in await admin.list_topics() if t.startswith(prefix))
    finally:
        await admin.close()


@pytest.fixture
def on_kafka(tmp_path, kafka_broker: BrokerUnderTest, simulator) -> Deployment:
    deployed = Deployment(tmp_path, kafka_broker.bootstrap, simulator, embedded=False)
    deployed.configure(broker_extra='data_retention = "3d"\nrequest_retention = "2h"')
    try:
        yield deployed
    finally:
        deployed.stop()


def stored_producer_ids(data_dir, topic: str) -> set[int]:
    """The producer id of every record batch in the broker's log segments of ``topic``."""
    ids = set()
    for segment in (data_dir / "kraft-logs").glob(f"{topic}-*/*.log"):
        records = MemoryRecords(segment.read_bytes())
        while (batch := records.next_batch()) is not None:
            ids.add(batch.producer_id)
    return ids


async def test_kafka_keeps_the_topic_configs_we_ask_for_and_our_producer_is_idempotent(
        on_kafka, kafka_broker):
    worker = on_kafka.start_worker()
    await on_kafka.produce(on_kafka.topic("refresh"), [(json_key("x"), b'{"service": "x"}')])
    await apoll(lambda: worker.get("/cache/cryptometer/ticker/BTC").json().get("status")
                == "HIT", timeout=30, message="one refresh through the pipeline")
    await apoll(lambda: worker.stats()["dead_letters"] == 1,
                message="the bad request dead-lettered")

    prefix = on_kafka.settings.topic_prefix
    ours = await topics_of(kafka_broker.bootstrap, prefix)
    changelogs = [f"{on_kafka.app_id}-{name}-changelog"
                  for name in ("cache", "service-health", "ratelimit")]
    reported = await topic_configs(kafka_broker.bootstrap, ours + changelogs)
    data = [t for t in ours if t.startswith(prefix + "data.")] + [prefix + "dead-letter"]
    requests = [prefix + name for name in ("refresh", "volatility", "internal.requests",
                                           "internal.fetch", "internal.outcomes")]
    assert len(data) == 1 + len(on_kafka.settings.service("cryptometer").endpoints)
    assert set(ours) == set(data) | set(requests)
    for topic in data:
        assert reported[topic]["retention.ms"] == str(DATA_RETENTION_MS), topic
        assert reported[topic]["cleanup.policy"] == "delete", topic
    for topic in requests:
        assert reported[topic]["retention.ms"] == str(REQUEST_RETENTION_MS), topic
    # Faust's changelogs: compacted (the newest value per key is kept forever). The rate
    # limiter's is a plain table of send times (tables/ratelimit.py, no windows): compacted
    # too, each scope's value trimmed to the longest limit window on every write.
    for changelog in changelogs:
        assert reported[changelog]["cleanup.policy"] == "compact", changelog

    if kafka_broker.data_dir is None:
        return  # the log segments of an external Kafka are out of reach
    plain = stored_producer_ids(kafka_broker.data_dir, on_kafka.topic("refresh"))
    written = stored_producer_ids(kafka_broker.data_dir, on_kafka.topic("data.cryptometer.ticker"))
    letters = stored_producer_ids(kafka_broker.data_dir, on_kafka.topic("dead-letter"))
    assert plain == {-1}  # the test's own producer: not idempotent
    assert written and min(written) >= 0 and letters and min(letters) >= 0
