"""Orphaned records on the embedded broker, and what ``/health`` says about failing sends.

Tansu accepts a produce to a topic it does not have; creating the topic afterwards resets
its log end to 0 over those records, and every later produce whose offset meets one of
them fails with ``UnknownError`` (quotacache/dev/broker.py). Here the orphans are written
on purpose, with raw produce requests (no metadata request, so nothing auto-creates the
topic first), as a client holding a restarted broker's old metadata would.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
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


async def test_health_is_not_ready_while_sends_fail_and_ready_when_they_deliver(deployment):
    """Dead letters are sent and never read by the worker: their topic can be poisoned
    under a running worker. Each failed send moves the log end one record further, so
    after ``orphans`` failures the sends deliver again. Reads are answered throughout."""
    orphans = 12
    worker = deployment.start_worker()
    dead_letter = deployment.topic("dead-letter")
    admin = AIOKafkaAdminClient(bootstrap_servers=deployment.bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([dead_letter])
    finally:
        await admin.close()
    await poison(deployment.bootstrap, [dead_letter], orphans)
    refresh = deployment.topic("refresh")
    health: list[httpx.Response] = []

    async def bad_message_then_health() -> bool:
        await deployment.produce(refresh, [(None, b"not json")])
        health.append(worker.get("/health"))
        assert worker.get("/cache/cryptometer/ticker/BTC").status_code in (200, 202)
        return health[-1].status_code == 503

    await apoll_async(bad_message_then_health, timeout=30, message="/health 503")
    until_503 = len(health)
    body = health[-1].json()  # the one error shape, with the reason
    assert set(body) == {"error", "status"} and "Retry-After" in health[-1].headers
    assert dead_letter in body["error"] and "UnknownError" in body["error"]

    async def delivered_again() -> bool:
        await deployment.produce(refresh, [(None, b"not json")])
        health.append(worker.get("/health"))
        return health[-1].status_code == 200

    await apoll_async(delivered_again, timeout=60, message="/health 200 again")
    failed = health[-1].json()["sends"]["failed"]
    assert health[-1].json()["sends"]["failing_in_a_row"] == {}
    print(f"\nfailing sends: /health 503 after {until_503} bad messages, 200 again "
          f"{len(health) - until_503} later ({failed} dead letters failed in all)")
    assert orphans - 4 <= failed <= orphans + 4
    assert health[-1].json()["ready"] is True


async def apoll_async(predicate, timeout: float, message: str, interval: float = 0.3):
    """``apoll`` for an async predicate."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(interval)
    raise AssertionError(f"{message} not reached in {timeout}s")
