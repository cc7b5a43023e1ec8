"""The same pipeline on a real Kafka (in Docker, through testcontainers): one refresh is
one call and a HIT, a bad message is dead-lettered. Skipped, with the reason, where no
Docker engine answers; the whole suite runs on real Kafka with QUOTACACHE_TEST_KAFKA=docker
or KAFKA_BOOTSTRAP_SERVERS."""

from __future__ import annotations

import asyncio
import json

import pytest

from .conftest import Deployment, kafka_container, poll

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_pipeline_on_a_real_kafka(tmp_path, simulator):
    with kafka_container() as bootstrap:
        deployment = Deployment(tmp_path, bootstrap, simulator, embedded=False)
        try:
            worker = deployment.start_worker()
            assert worker.get("/cache/cryptometer/ticker/BTC").status_code == 202
            poll(lambda: worker.get("/cache/cryptometer/ticker/BTC").json()["status"] == "HIT",
                 timeout=60, interval=0.5)
            assert simulator.stats()["accepted"] == 1
            asyncio.run(deployment.produce(deployment.topic("refresh"), [(None, b"nope")]))
            letters = asyncio.run(deployment.consume(deployment.topic("dead-letter"), 1))
            assert "not JSON" in json.loads(letters[0].value)["reason"]
        finally:
            deployment.stop()
