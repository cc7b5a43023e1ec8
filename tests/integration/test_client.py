"""The Python client: get_or_fetch, subscribe, and a LocalReplica answering from memory."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from quotacache.client import Client
from quotacache.client.client import DEFAULT_WAIT
from quotacache.client.replica import LocalReplica, subscribe
from quotacache.streams.records import DataRecord

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

    # A key that cannot be fetched now: a MISS after the short default wait, not a hang.
    deployment.simulator.configure(fail={"cryptometer": "500"})
    async with Client(settings, base_url=worker.url) as client:
        for _ in range(2):
            started = time.monotonic()
            missing = await client.get_or_fetch("cryptometer", "ls_ratio", "SOL")
            assert time.monotonic() - started < DEFAULT_WAIT + 2.0
            assert missing["status"] == "MISS" and missing["data"] is None


async def test_events_push_new_records_of_the_chosen_keys(deployment):
    import httpx

    worker = deployment.start_worker()
    async with httpx.AsyncClient(base_url=worker.url, timeout=30) as http:
        async with http.stream("GET", "/events", params={"service": "cryptometer",
                                                          "endpoint": "ticker",
                                                          "symbols": "ETH"}) as events:
            assert events.headers["Content-Type"].startswith("text/event-stream")
            lines = events.aiter_lines()
            assert await anext(lines) == ": ready"
            async with Client(deployment.settings) as client:
                await client.request_refresh("cryptometer", "ticker", "BTC")  # not chosen
                await client.request_refresh("cryptometer", "ticker", "ETH")
            data = None
            async for line in lines:
                if line.startswith("data: "):
                    data = line.removeprefix("data: ")
                    break
    assert json.loads(data)["key"] == "cryptometer/ticker/ETH"
    for params, code in (({"service": "nope"}, 404), ({"service": "cryptometer",
                                                       "symbols": "../x"}, 400)):
        assert worker.get("/events", params=params).status_code == code
