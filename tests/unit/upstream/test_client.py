"""The upstream client through httpx.MockTransport: URLs from config only, keys kept secret."""

import gzip
import json
import tracemalloc
from urllib.parse import quote, quote_plus

import httpx
import pytest

from quotacache.errors import UpstreamError
from quotacache.settings import load_settings
from quotacache.upstream.client import ACCEPT_ENCODING, UpstreamClient
from tests.hostile import gzip_bomb

KEY = "sk-test-4f8a9c"


@pytest.fixture
def cryptometer(monkeypatch):
    monkeypatch.setenv("CRYPTOMETER_API_KEY", KEY)
    return load_settings().services["cryptometer"]


def client_answering(config, handler):
    return UpstreamClient("cryptometer", config, transport=httpx.MockTransport(handler))


async def test_symbol_and_fixed_params_go_where_the_profile_says(cryptometer):
    seen = []

    def handler(request):
        seen.append(request.url)
        return httpx.Response(200, json={"success": "true", "error": "false", "data": [1]})

    client = client_answering(cryptometer, handler)
    answer = await client.fetch("ticker", "BTC", now=0)
    await client.fetch("liquidation_data_v2", "ETH", now=0)
    await client.fetch("rapid_movements", "*", now=0)
    assert answer.data == [1]
    assert seen[0].path == "/ticker/"
    assert dict(seen[0].params) == {"e": "binance", "market_pair": "BTC-USDT", "api_key": KEY}
    assert dict(seen[1].params)["symbol"] == "eth"
    assert dict(seen[2].params) == {"api_key": KEY}
    assert all(url.host == "api.cryptometer.io" for url in seen)


@pytest.mark.parametrize("response, message", [
    (httpx.Response(500, text="boom"), "HTTP 500"),
    (httpx.Response(200, text="<html>"), "not JSON"),
    (httpx.Response(200, text="[" * 50_000), "not JSON"),  # RecursionError in json.loads
    (httpx.Response(200, text="[" + "9" * 5000 + "]"), "not JSON"),  # ValueError: too long
    (httpx.Response(200, json={"success": "false", "error": "No updates!"}), "No updates!"),
    (httpx.Response(200, json=[1, 2]), "not a JSON object"),
])
async def test_failures_are_upstream_errors_without_the_key(cryptometer, response, message):
    client = client_answering(cryptometer, lambda request: response)
    with pytest.raises(UpstreamError, match=message) as raised:
        await client.fetch("ticker", "BTC", now=0)
    assert KEY not in str(raised.value)


async def test_an_echoed_key_is_masked_in_every_form_it_can_take_in_a_url(monkeypatch):
    key = "sk/test+4f8a=9c"
    monkeypatch.setenv("CRYPTOMETER_API_KEY", key)
    config = load_settings().services["cryptometer"]
    echoed = [key, quote(key), quote(key, safe=""), quote_plus(key)]
    client = client_answering(config, lambda request: httpx.Response(
        200, json={"success": "true", "error": "false", "data": echoed}))
    answer = await client.fetch("ticker", "BTC", now=0)
    assert answer.data == ["***"] * 4


async def test_connection_errors_do_not_leak_the_url(cryptometer):
    def handler(request):
        raise httpx.ConnectError(f"cannot reach {request.url}", request=request)

    client = client_answering(cryptometer, handler)
    with pytest.raises(UpstreamError) as raised:
        await client.fetch("ticker", "BTC", now=0)
    assert KEY not in str(raised.value) and "ConnectError" in str(raised.value)


async def test_429_carries_retry_after(cryptometer):
    client = client_answering(cryptometer,
                              lambda r: httpx.Response(429, headers={"Retry-After": "7"}))
    with pytest.raises(UpstreamError) as raised:
        await client.fetch("ticker", "BTC", now=0)
    assert raised.value.status == 429 and raised.value.retry_after == 7


async def test_header_auth_puts_the_key_in_the_header(monkeypatch):
    monkeypatch.setenv("KINGFISHER_API_KEY", KEY)
    config = load_settings().services["kingfisher"]
    seen = []

    def handler(request):
        seen.append(request)
        return httpx.Response(200, json={"levels": [1]})

    client = UpstreamClient("kingfisher", config, transport=httpx.MockTransport(handler))
    answer = await client.fetch("liquidation_map", "BTC", now=0)
    assert answer.data == {"levels": [1]}
    assert seen[0].headers["X-API-Key"] == KEY and KEY not in str(seen[0].url)


OK = {"success": "true", "error": "false", "data": {"price": 1}}


def encoded(status, body, encoding, **headers):
    """An answer as it comes off the wire: still encoded (httpx decodes ``content=`` at
    once, and a zip bomb with it)."""
    return httpx.Response(status, stream=httpx.ByteStream(body),
                          headers={"Content-Encoding": encoding, **headers})


@pytest.mark.parametrize("encoding, pack", [
    ("gzip", gzip.compress), ("deflate", __import__("zlib").compress), ("identity", bytes)])
async def test_a_compressed_answer_is_decoded(cryptometer, encoding, pack):
    seen = []

    def handler(request):
        seen.append(request.headers["Accept-Encoding"])
        return encoded(200, pack(json.dumps(OK).encode()), encoding)

    answer = await client_answering(cryptometer, handler).fetch("ticker", "BTC", now=0)
    assert answer.data == {"price": 1} and seen == [ACCEPT_ENCODING]


async def test_a_zip_bomb_stops_at_the_cap_without_inflating_a_read_whole(cryptometer):
    """200 MB of spaces in 200 KB of gzip, capped at 64 KB: the answer is cut, and no more
    than about the cap is ever inflated at once (httpx inflates each network read whole:
    up to a thousand times its size)."""
    config = cryptometer.model_copy(update={"max_answer_bytes": 64 << 10})
    body = gzip_bomb()

    client = client_answering(config, lambda request: encoded(200, body, "gzip"))
    tracemalloc.start()
    try:
        with pytest.raises(UpstreamError, match="larger than 65536 bytes") as raised:
            await client.fetch("ticker", "BTC", now=0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not raised.value.retryable
    assert peak < 4 << 20, f"{peak >> 20} MB inflated at once"


@pytest.mark.parametrize("response, message", [
    (encoded(200, b"xx", "br"), "encoding not asked for"),
    (encoded(200, b"not gzip", "gzip"), "not valid gzip"),
    (httpx.Response(302, json={"error": "moved"}, headers={"Location": "/elsewhere"}),
     "HTTP 302"),
])
async def test_answers_that_are_not_data_fail_without_a_retry(cryptometer, response, message):
    client = client_answering(cryptometer, lambda request: response)
    with pytest.raises(UpstreamError, match=message) as raised:
        await client.fetch("ticker", "BTC", now=0)
    assert not raised.value.retryable
