"""How the client reports a worker's error answers."""

from __future__ import annotations

import json

import httpx
import pytest

from quotacache.client import Client
from quotacache.settings import load_settings


def client_with(handler) -> Client:
    return Client(load_settings(), base_url="http://worker",
                  transport=httpx.MockTransport(handler))


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
