"""Client.get_or_fetch's wait, and how the client reports a worker's error answers."""

from __future__ import annotations

import asyncio
import inspect
import json
import time

import httpx
import pytest

from quotacache.client import Client
from quotacache.client.client import DEFAULT_WAIT
from quotacache.settings import load_settings

from ...hostile import gzip_bomb

MISS = {"service": "cryptometer", "endpoint": "ticker", "symbol": "BTC", "status": "MISS",
        "fresh": False, "data": None, "fetched_at": None, "age": None, "ttl": 120,
        "refresh_requested": True}


def client_with(handler, **options) -> Client:
    return Client(load_settings(), base_url="http://worker",
                  transport=httpx.MockTransport(handler), **options)


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


class Dripping(httpx.AsyncByteStream):
    """A body that never ends: a byte every ``every`` seconds (each read is quick, so
    httpx's per-read timeout never fires)."""

    def __init__(self, every: float):
        self.every = every

    async def __aiter__(self):
        yield b'{"status": "HIT", "data": "'
        while True:
            await asyncio.sleep(self.every)
            yield b"x"


async def test_an_answer_that_never_ends_is_a_timeout_within_the_call_timeout():
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Type": "application/json"},
                              stream=Dripping(every=0.05))

    async with client_with(handler, timeout=0.5) as client:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout, match="no whole answer in 0.5 s"):
            await client.stats()
        with pytest.raises(httpx.ReadTimeout, match="no whole answer in 0.7 s"):
            await client.get_or_fetch("cryptometer", "ticker", "BTC", wait=0.2)
    assert time.monotonic() - started < 3.0


async def test_an_answer_larger_than_any_entry_is_refused_without_reading_it_all():
    sent = []

    class Huge(httpx.AsyncByteStream):
        async def __aiter__(self):
            for _ in range(10_000):  # 640 MB if read whole
                sent.append(1)
                yield b"x" * 65536

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=Huge())

    async with client_with(handler) as client:
        with pytest.raises(httpx.DecodingError, match="answered more than"):
            await client.stats()
        assert len(sent) * 65536 <= client.max_answer_bytes + 65536


async def test_a_compressed_answer_is_refused_unread_and_identity_is_asked_for():
    """A gzip bomb inflates a thousandfold per read: past the size cap before it counts."""
    bomb = gzip_bomb(64 << 20)
    asked = []

    async def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.headers.get("Accept-Encoding"))
        return httpx.Response(200, content=bomb, headers={
            "Content-Type": "application/json", "Content-Encoding": "gzip"})

    async with client_with(handler) as client:
        with pytest.raises(httpx.DecodingError, match="Content-Encoding 'gzip'"):
            await client.stats()
    assert asked == ["identity"]

    async def refusing(request: httpx.Request) -> httpx.Response:  # a gzipping proxy's
        return httpx.Response(502, content=bomb, headers={"Content-Encoding": "gzip"})

    async with client_with(refusing) as client:
        with pytest.raises(httpx.HTTPStatusError, match="Bad Gateway"):
            await client.stats()
