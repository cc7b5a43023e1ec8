"""The Python client: get_or_fetch, subscribe, and a LocalReplica answering from memory."""

from __future__ import annotations

import asyncio
import time

import pytest
from quotacache.streams.records import DataRecord

from quotacache.client import Client
from quotacache.replica import LocalReplica, subscribe

from .conftest import apoll, json_key

pytestmark = pytest.mark.integration


async def test_get_or_fetch_subscribe_and_a_local_replica(deployment):
    worker = deployment.start_worker()
    settings = deployment.settings
    old = DataRecord(service="cryptometer", endpoint="ls_ratio", symbol="ETH", data={"v": 0},
                     fetched_at=time.time() - 400, ttl=300)
    await deployment.produce(deployment.topic("data.cryptometer.ls_ratio"),
                             [(json_key(old.key), old.to_json())])

    pushed: list[DataRecord] = []

    async def listen() -> None:
        async for record in subscribe(settings, "cryptometer", "ticker", from_beginning=True):
            pushed.append(record)
            return

    listener = asyncio.create_task(listen())
    async with Client(settings, base_url=worker.url) as client:
        entry = await client.get_or_fetch("cryptometer", "ticker", "BTC", wait=10)
        assert entry["status"] == "HIT" and entry["data"]["params"]["market_pair"] == "BTC-USDT"
    await asyncio.wait_for(listener, 10)
    assert pushed[0].key == "cryptometer/ticker/BTC"

    async with LocalReplica(settings, services=["cryptometer"]) as replica:
        await apoll(lambda: replica.get("cryptometer", "ticker", "btc")["status"] == "HIT",
                    message="the replica has the fetched entry")
        assert replica.get("cryptometer", "ticker", "BTC")["data"] == entry["data"]
        stale = replica.get("cryptometer", "ls_ratio", "ETH")
        assert stale["status"] == "STALE" and stale["age"] >= 400
        assert replica.get("cryptometer", "ls_ratio", "SOL")["status"] == "MISS"
        assert replica.get("cryptometer", "rapid_movements", "BTC")["status"] == "MISS"
        started = time.perf_counter()
        for _ in range(10_000):
            replica.get("cryptometer", "ticker", "BTC")
        per_read = (time.perf_counter() - started) / 10_000
        print(f"\nLocalReplica.get: {per_read * 1e6:.1f} us")
    assert deployment.simulator.stats()["accepted"] == 1
