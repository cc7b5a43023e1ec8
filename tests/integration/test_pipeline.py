"""The pipeline end to end: refresh request -> one upstream call -> data topic -> cache -> HTTP."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from quotacache.client import Client
from quotacache.streams.records import DataRecord

from ..windows import max_in_any_window
from .conftest import API_KEY, apoll, json_key, poll

pytestmark = pytest.mark.integration


def status_of(worker, path):
    response = worker.get(path)
    return response.json().get("status") if response.status_code < 400 else None


@pytest.mark.both_brokers
async def test_refresh_request_makes_one_call_and_a_hit_then_none_inside_ttl(deployment):
    worker = deployment.start_worker()
    async with Client(deployment.settings, base_url=worker.url) as client:
        await client.request_refresh("cryptometer", "ticker", "BTC")
        await apoll(lambda: status_of(worker, "/cache/cryptometer/ticker/BTC") == "HIT",
                    message="BTC ticker cached")
        entry = worker.get("/cache/cryptometer/ticker/BTC")
        assert entry.headers["X-Cache"] == "HIT" and "Age" in entry.headers
        assert entry.json()["data"]["params"]["market_pair"] == "BTC-USDT"
        assert deployment.simulator.stats()["accepted"] == 1

        saved = worker.stats()["calls_saved"]  # reads before the HIT asked for refreshes too
        await client.request_refresh("cryptometer", "ticker", "BTC")
        await apoll(lambda: worker.stats()["calls_saved"] == saved + 1,
                    message="second request saved")
    assert deployment.simulator.stats()["accepted"] == 1
    assert worker.stats()["upstream_calls"] == 1


@pytest.mark.both_brokers
async def test_fifty_concurrent_requests_for_one_key_make_one_call(deployment):
    worker = deployment.start_worker()
    async with Client(deployment.settings) as client:
        await asyncio.gather(*(client.request_refresh("cryptometer", "ls_ratio", "ETH")
                               for _ in range(50)))
    await apoll(lambda: worker.stats()["calls_saved"] == 49, message="49 requests saved")
    await apoll(lambda: status_of(worker, "/cache/cryptometer/ls_ratio/ETH") == "HIT")
    assert deployment.simulator.stats()["accepted"] == 1
    assert worker.stats()["upstream_calls"] == 1


async def test_demand_over_every_limit_never_gets_a_429(deployment):
    limits, endpoint_limits = ["8/4", "5/2"], ["3/6"]
    deployment.configure(f"limits = {json.dumps(limits)}\n"
                         f"endpoint_limits = {json.dumps(endpoint_limits)}\n")
    deployment.simulator.configure(limits={"cryptometer": limits},
                                   endpoint_limits={"cryptometer": endpoint_limits})
    worker = deployment.start_worker()
    symbols = ["BTC", "ETH", "SOL", "XRP", "ADA", "DOGE"]
    endpoints = ["ticker", "ls_ratio", "open_interest", "xtrades"]
    async with Client(deployment.settings) as client:
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:  # ~24 distinct keys asked again every 0.25 s
            for endpoint in endpoints:
                for symbol in symbols:
                    await client.request_refresh("cryptometer", endpoint, symbol, force=True)
            await asyncio.sleep(0.25)
    assert worker.stats()["rate_limit_blocks"] > 0
    sim = deployment.simulator.stats(log=True)
    assert sim["rejected"] == 0
    times = [t for t, _ in sim["call_log"]]
    assert len(times) >= 5  # calls were made, within every limit (high priority: 60 %)
    assert max_in_any_window(times, 4) <= 8 and max_in_any_window(times, 2) <= 5
    for endpoint in endpoints:
        own = [t for t, name in sim["call_log"] if name == f"cryptometer/{endpoint}"]
        assert max_in_any_window(own, 6) <= 3


async def test_malformed_messages_are_dead_lettered_and_good_ones_beside_them_processed(
        deployment):
    worker = deployment.start_worker()

    def good(symbol):
        return (None, json.dumps({"service": "cryptometer", "endpoint": "ticker",
                                   "symbol": symbol}).encode())

    bad = [
        (None, b"\x00\xffnot json"),
        (b"k", json.dumps({"service": "nope", "endpoint": "ticker", "symbol": "BTC"}).encode()),
        (None, json.dumps({"service": "cryptometer", "endpoint": "ticker",
                           "symbol": "../admin"}).encode()),
        (None, json.dumps({"service": "cryptometer", "endpoint": "ticker",
                           "symbol": "BTC&api_key=x"}).encode()),
        (None, b"[1,2,3]"),
        (None, b"[" * 50_000),  # json.loads raises RecursionError
        (None, b'{"service": "cryptometer", "x": ' + b"1" * 5000 + b"}"),  # ValueError
    ]
    await deployment.produce(deployment.topic("refresh"),
                             [good("BTC"), bad[0], bad[1], good("ETH"), bad[2], bad[3],
                              good("SOL"), bad[4], bad[5], good("XRP"), bad[6], good("ADA")])
    letters = await deployment.consume(deployment.topic("dead-letter"), len(bad))
    reasons = [json.loads(letter.value)["reason"] for letter in letters]
    assert sum("not JSON" in r for r in reasons) == 3
    assert any("unknown service 'nope'" in r for r in reasons)
    assert sum("symbol" in r for r in reasons) == 2
    assert any("expected a JSON object" in r for r in reasons)
    for symbol in ("BTC", "ETH", "SOL", "XRP", "ADA"):
        await apoll(lambda s=symbol: status_of(worker, f"/cache/cryptometer/ticker/{s}") == "HIT",
                    message=f"{symbol} processed")
    assert worker.child.alive()
    assert worker.stats()["dead_letters"] == len(bad)
    assert deployment.simulator.stats()["accepted"] == 5


def test_reads_answer_4xx_for_unknown_names_and_bad_symbols(deployment):
    worker = deployment.start_worker()
    unknown = worker.get("/cache/nope/ticker/BTC")
    assert unknown.status_code == 404 and "unknown service 'nope'" in unknown.json()["error"]
    assert worker.get("/cache/cryptometer/nope/BTC").status_code == 404
    bad = worker.get("/cache/cryptometer/ticker/BTC%26api_key%3Dx")
    assert bad.status_code == 400 and "symbol" in bad.json()["error"]
    miss = worker.get("/cache/cryptometer/rapid_movements/BTC")
    assert miss.status_code == 202 and miss.headers["X-Cache"] == "MISS"
    assert miss.json()["symbol"] == "*"  # a market-wide endpoint has one entry


async def test_stale_entry_is_served_with_its_age_while_the_upstream_fails(deployment):
    worker = deployment.start_worker()
    deployment.simulator.configure(fail={"cryptometer": "500"})
    old = DataRecord(service="cryptometer", endpoint="ticker", symbol="BTC", data={"p": 1},
                     fetched_at=time.time() - 300, ttl=120)
    await deployment.produce(deployment.topic("data.cryptometer.ticker"),
                             [(json_key(old.key), old.to_json())])
    response = await apoll(lambda: (r := worker.get("/cache/cryptometer/ticker/BTC")).json()
                           .get("status") == "STALE" and r)
    assert response.status_code == 200 and int(response.headers["Age"]) >= 300
    assert response.json()["data"] == {"p": 1}
    await apoll(lambda: worker.stats()["errors"] >= 1, message="the refresh failed upstream")
    again = worker.get("/cache/cryptometer/ticker/BTC")
    assert again.status_code == 200 and again.headers["X-Cache"] == "STALE"
    assert worker.stats()["stale_served"] >= 2


async def test_entries_past_max_staleness_are_tombstoned(deployment):
    deployment.configure('max_staleness = "5s"\n')
    worker = deployment.start_worker()
    old = DataRecord(service="cryptometer", endpoint="coinlist", symbol="*", data=[1],
                     fetched_at=time.time() - 60, ttl=30)
    await deployment.produce(deployment.topic("data.cryptometer.coinlist"),
                             [(json_key(old.key), old.to_json())])
    changelog = f"{deployment.app_id}-cache-changelog"
    records = await deployment.consume(changelog, 2)
    assert records[0].value is not None and records[1].value is None  # written, then tombstoned
    assert json.loads(records[1].key) == old.key
    assert worker.get("/cache/cryptometer/coinlist/*").json()["status"] == "MISS"


def test_the_api_key_never_reaches_logs_or_answers(deployment):
    worker = deployment.start_worker()
    asyncio.run(_one_refresh(deployment, worker))
    outputs = [worker.get("/cache/cryptometer/ticker/BTC").text, worker.get("/stats").text,
               worker.get("/status").text, worker.child.log_tail(10_000)]
    assert not any(API_KEY in text for text in outputs)


async def _one_refresh(deployment, worker):
    async with Client(deployment.settings) as client:
        await client.request_refresh("cryptometer", "ticker", "BTC")
    await apoll(lambda: status_of(worker, "/cache/cryptometer/ticker/BTC") == "HIT")
    poll(lambda: deployment.simulator.stats()["accepted"] == 1)


async def test_a_read_on_the_keys_owner_admits_its_refresh_in_place(deployment):
    """A miss on the worker that owns the key orders its fetch at once, not through a
    record on ``internal.requests`` that the same worker reads back a hop later."""
    worker = deployment.start_worker()
    answer = worker.get("/cache/cryptometer/ls_ratio/BTC?wait=5")
    assert answer.status_code == 200 and answer.json()["status"] == "HIT"
    requests = await deployment.consume_all(lambda t: t == deployment.topic("internal.requests"))
    orders = await deployment.consume_all(lambda t: t == deployment.topic("internal.fetch"))
    assert requests == [] and orders, (len(requests), len(orders))
    assert deployment.simulator.stats()["accepted"] == 1
