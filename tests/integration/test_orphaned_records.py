"""Orphaned records on the embedded broker: the fault, and the repair.

Tansu accepts a produce to a topic it does not have; creating the topic afterwards resets
its log end to 0 over those records, and every later produce whose offset meets one of
them fails with ``UnknownError`` (quotacache/dev/broker.py). Here the orphans are written
on purpose, with raw produce requests (no metadata request, so nothing auto-creates the
topic first), as a client holding a restarted broker's old metadata would.
"""

from __future__ import annotations

import time

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.client import AIOKafkaClient
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.protocol.produce import ProduceRequest

from quotacache.dev.broker import ensure_topics

from .conftest import apoll

pytestmark = pytest.mark.integration

PARTITIONS = 4
#: A fresh worker on the poisoned broker serves a new key within this bound (measured
#: ~3 s from its readiness).
FIRST_HIT_BOUND = 20.0


@pytest.fixture(autouse=True)
def embedded_only(deployment):
    if not deployment.embedded:
        pytest.skip("orphaned records are a fault of the embedded broker (Tansu)")


async def write_orphans(bootstrap: str, topic: str, count: int) -> None:
    """``count`` one-record batches in every partition of ``topic``, which does not exist."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    try:
        node = next(iter(client.cluster.brokers())).nodeId
        for partition in range(PARTITIONS):
            for n in range(count):
                batch = BatchBuilder(16384, 0)
                batch.append(key=None, value=b"orphan %d" % n, timestamp=None)
                request = ProduceRequest(None, 1, 10_000, [(topic, [(partition, batch._build())])])
                response = await client.send(node, request)
                assert response.topics[0][1][0][1] == 0  # error code: accepted
    finally:
        await client.close()


async def poison(bootstrap: str, topics: list[str], count: int) -> None:
    """Orphans first, then the topics created over them (what the old code did)."""
    for topic in topics:
        await write_orphans(bootstrap, topic, count)
    await ensure_topics(bootstrap, dict.fromkeys(topics, PARTITIONS))


async def failed_sends(bootstrap: str, topic: str) -> int:
    """How many of 4 sends to partition 0 of ``topic`` fail."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    failed = 0
    try:
        for _ in range(4):
            try:
                await producer.send_and_wait(topic, b"probe", partition=0)
            except Exception:
                failed += 1
    finally:
        await producer.stop()
    return failed


async def test_orphaned_records_make_sends_fail_until_the_topic_is_recreated(deployment):
    """The fault itself, and the repair: ``ensure_topics(..., repair=True)``."""
    poisoned, repaired = deployment.topic("probe.poisoned"), deployment.topic("probe.repaired")
    await poison(deployment.bootstrap, [poisoned, repaired], 8)
    assert await failed_sends(deployment.bootstrap, poisoned) == 4
    fixed = await ensure_topics(deployment.bootstrap, {repaired: PARTITIONS}, repair=True)
    assert fixed == [repaired]
    assert await failed_sends(deployment.bootstrap, repaired) == 0
    assert await ensure_topics(deployment.bootstrap, {repaired: PARTITIONS}, repair=True) == []


async def test_a_fresh_worker_repairs_a_broker_with_orphaned_records(deployment):
    """The issue's second observation: a new worker on that broker was dead as well."""
    names = ["internal.fetch", "internal.requests", "refresh"]
    await poison(deployment.bootstrap, [deployment.topic(n) for n in names], 50)
    started = time.monotonic()
    worker = deployment.start_worker()
    ready = time.monotonic() - started
    worker.get("/cache/cryptometer/ticker/BTC")
    await apoll(lambda: worker.get("/cache/cryptometer/ticker/BTC").headers.get("X-Cache")
                == "HIT", timeout=FIRST_HIT_BOUND, interval=0.2, message="BTC fetched")
    first_hit = time.monotonic() - started - ready
    log = worker.child.log_path.read_text(errors="replace")
    print(f"\npoisoned broker: fresh worker ready in {ready:.1f} s, first HIT {first_hit:.1f} s "
          "later")
    assert "re-creating topics with orphaned records" in log
    assert "UnknownError" not in log
    assert worker.get("/health").status_code == 200
