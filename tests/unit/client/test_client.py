"""Client.get_or_fetch's wait, and how the client reports a worker's error answers."""

from __future__ import annotations

import inspect
import json
import time

import httpx
import pytest

from quotacache.client import Client
from quotacache.client.client import DEFAULT_WAIT
from quotacache.settings import load_settings

MISS = {"service": "cryptometer", "endpoint": "ticker", "symbol": "BTC", "status": "MISS",
        "fresh": False, "data": None, "fetched_at": None, "age": None, "ttl": 120,
        "refresh_requested": True}


def client_with(handler) -> Client:
    return Client(load_settings(), base_url="http://worker",
                  transport=httpx.MockTransport(handler))


def test_the_default_wait_is_short_and_documented():
    assert DEFAULT_WAIT <= 2.0
    assert inspect.signature(Client.get_or_fetch).parameters["wait"].default == DEFAULT_WAIT
    doc = inspect.getdoc(Client.get_or_fetch)
    assert "1 s" in doc and "MISS" in doc and "never an exception" in doc


async def test_a_key_that_cannot_be_fetched_is_a_miss_after_the_wait_not_a_hang():
    asked = []

    async def handler(request: httpx.Request) -> httpx.Response:
        asked.append(dict(request.url.params))
        return httpx.Response(202, json=MISS, headers={"X-Cache": "MISS"})

    async with client_with(handler) as client:
        started = time.monotonic()
        entries = [await client.get_or_fetch("cryptometer", "ticker", "BTC") for _ in range(3)]
    assert time.monotonic() - started < 1.0  # the worker holds the answer, not the client
    assert [float(a["wait"]) for a in asked] == [DEFAULT_WAIT] * 3
    assert all(e["status"] == "MISS" and e["data"] is None for e in entries)


async def test_wait_and_max_age_are_passed_on():
    asked = []

    async def handler(request: httpx.Request) -> httpx.Response:
        asked.append(dict(request.url.params))
        return httpx.Response(200, json={**MISS, "status": "HIT", "data": {"v": 1}})

    async with client_with(handler) as client:
        entry = await client.get_or_fetch("cryptometer", "ticker", "BTC", max_age=30, wait=0)
    assert entry["status"] == "HIT"
    assert asked == [{"wait": "0", "max_age": "30"}]


@pytest.mark.parametrize("status,body,kind,message", [
    (404, json.dumps({"error": "unknown service 'x'", "status": 404}), "application/json",
     "unknown service 'x'"),
    (503, json.dumps({"ready": False}), "application/json", '{"ready": false}'),
    (502, "<html>bad gateway</html>", "text/html", "<html>bad gateway</html>"),
])
async def test_an_error_answer_raises_with_the_workers_message(status, body, kind, message):
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body.encode(), headers={"Content-Type": kind})

    async with client_with(handler) as client:
        with pytest.raises(httpx.HTTPStatusError) as raised:
            await client.stats()
    assert str(raised.value) == message and raised.value.response.status_code == status


async def test_an_answer_that_is_not_a_json_object_raises_a_decoding_error():
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"<html>hello</html>",
                              headers={"Content-Type": "text/html"})

    async with client_with(handler) as client:
        with pytest.raises(httpx.DecodingError, match="not a JSON object"):
            await client.stats()
