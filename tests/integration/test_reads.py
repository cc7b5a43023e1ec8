"""Reads that wait for a refresh (?wait) or ask for younger data (?max_age)."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from quotacache.streams.records import DataRecord

from .conftest import json_key

pytestmark = pytest.mark.integration


async def test_a_hundred_waiting_readers_of_a_missing_key_cost_one_call(deployment):
    deployment.simulator.configure(latency=[0.3, 0.3])
    worker = deployment.start_worker()
    async with httpx.AsyncClient(base_url=worker.url, timeout=30,
                                 limits=httpx.Limits(max_connections=200)) as http:
        answers = await asyncio.gather(*(
            http.get("/cache/cryptometer/ticker/BTC", params={"wait": "5"})
            for _ in range(100)))
    assert [a.status_code for a in answers] == [200] * 100
    assert {a.headers["X-Cache"] for a in answers} == {"HIT"}
    assert len({a.json()["fetched_at"] for a in answers}) == 1
    assert deployment.simulator.stats()["accepted"] == 1


async def test_wait_gives_up_with_the_stale_entry_and_max_age_forces_younger_data(deployment):
    worker = deployment.start_worker()
    record = DataRecord(service="cryptometer", endpoint="ticker", symbol="ETH", data={"v": 1},
                        fetched_at=time.time() - 60, ttl=120)
    await deployment.produce(deployment.topic("data.cryptometer.ticker"),
                             [(json_key(record.key), record.to_json())])
    deadline = time.monotonic() + 20
    while worker.get("/cache/cryptometer/ticker/ETH").status_code != 200:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    assert worker.get("/cache/cryptometer/ticker/ETH").headers["X-Cache"] == "HIT"
    younger = worker.get("/cache/cryptometer/ticker/ETH", params={"max_age": "30", "wait": "5"})
    assert younger.headers["X-Cache"] == "HIT" and younger.json()["age"] < 30
    assert deployment.simulator.stats()["accepted"] == 1

    deployment.simulator.configure(fail={"cryptometer": "timeout"})
    started = time.monotonic()
    stale = worker.get("/cache/cryptometer/ticker/ETH", params={"max_age": "0.001",
                                                                 "wait": "1"})
    assert stale.status_code == 200 and stale.headers["X-Cache"] == "STALE"
    assert time.monotonic() - started < 5
    for bad in ({"wait": "x"}, {"wait": "61"}, {"max_age": "0"}, {"max_age": "-1"},
                {"wait": "nan"}):
        answer = worker.get("/cache/cryptometer/ticker/ETH", params=bad)
        assert answer.status_code == 400 and "error" in answer.json(), bad


def test_metrics_are_prometheus_text(deployment):
    from prometheus_client.parser import text_string_to_metric_families

    worker = deployment.start_worker()
    worker.get("/cache/cryptometer/ticker/BTC")
    answer = worker.get("/metrics")
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(answer.text)}
    misses = [s for s in families["quotacache_misses"].samples
              if s.labels == {"service": "cryptometer", "endpoint": "ticker"}]
    assert misses and misses[0].value >= 1
    current = [s.labels["strategy"] for s in families["quotacache_strategy"].samples
               if s.labels["service"] == "cryptometer" and s.value == 1]
    assert current == ["NORMAL"]
    assert any(s.labels["scope"] == "cryptometer"
               for s in families["quotacache_limit_allowance"].samples)


async def test_hits_of_a_hot_key_answer_as_the_view_does_and_follow_new_data(deployment):
    worker = deployment.start_worker()
    path = "/cache/cryptometer/ticker/SOL"

    async def land(value: int, ttl: float) -> float:
        record = DataRecord(service="cryptometer", endpoint="ticker", symbol="SOL",
                            data={"v": value, "nested": {"age": 0, "ttl": 1}},
                            fetched_at=time.time(), ttl=ttl)
        await deployment.produce(deployment.topic("data.cryptometer.ticker"),
                                 [(json_key(record.key), record.to_json())])
        deadline = time.monotonic() + 20
        while (worker.get(path).json().get("data") or {}).get("v") != value:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        return record.fetched_at

    await land(1, 120)
    before = worker.stats()["hits"]
    answers = [worker.get(path), worker.get(path, params={"wait": "2"}), worker.get(path)]
    assert worker.stats()["hits"] == before + 3
    for answer in answers:  # the first by the view, the others by the hit path
        assert answer.status_code == 200 and answer.headers["X-Cache"] == "HIT"
        assert answer.headers["Content-Type"] == answers[0].headers["Content-Type"]
        assert int(answer.headers["Age"]) == int(answer.json()["age"])
        body = answer.json()
        assert list(body) == list(answers[0].json())
        assert {k: v for k, v in body.items() if k != "age"} == {
            k: v for k, v in answers[0].json().items() if k != "age"}
    lower = worker.get("/cache/cryptometer/ticker/sol").json()  # by the view
    assert lower == {**answers[0].json(), "age": lower["age"]}
    assert worker.get(path, params={"wait": "nan"}).status_code == 400

    landed = await land(2, 2.0)  # new data replaces the encoded answer
    await asyncio.sleep(2.2)  # past its TTL: never that entry as a HIT any more
    answer = worker.get(path)  # (a key read this often is renewed as it expires)
    assert answer.headers["X-Cache"] == "STALE" or answer.json()["fetched_at"] > landed
