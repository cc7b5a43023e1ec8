"""From the moment the port opens until the worker is ready, every route answers 503 with
Retry-After and the one JSON error shape: no 500 from half-built state, and no write
accepted before the tables are recovered."""

from __future__ import annotations

import time
from collections import Counter

import httpx
import pytest

from quotacache.web.openapi import document

pytestmark = pytest.mark.integration

BODIES = {
    "/refresh": {"service": "cryptometer", "endpoint": "ticker", "symbol": "BTC"},
    "/batch": {"symbols": ["BTC"], "endpoints": ["cryptometer/ticker"]},
    "/symbols": {"symbols": ["BTC"], "endpoints": ["cryptometer/ticker"]},
    "/strategy": {"service": "cryptometer", "strategy": "NORMAL"},
}
PATH_VALUES = {"{service}": "cryptometer", "{endpoint}": "ticker", "{symbol}": "BTC"}
STREAMS = ("/events", "/dashboard/events")  # they stay open once ready: asked only before


def routes(settings) -> list[tuple[str, str]]:
    out = []
    for path, operations in document(settings)["paths"].items():
        for name, value in PATH_VALUES.items():
            path = path.replace(name, value)
        out += [(method.upper(), path) for method in operations if path not in STREAMS]
    return out


@pytest.mark.both_brokers
def test_every_route_answers_503_until_the_worker_is_ready(deployment):
    worker = deployment.start_worker(wait=False)
    every = routes(deployment.settings) + [("GET", "/events?service=cryptometer")]
    seen: Counter[tuple[str, int]] = Counter()
    bad = []
    deadline = time.monotonic() + 90
    with httpx.Client(base_url=worker.url, timeout=5) as client:
        ready = False
        while not ready and time.monotonic() < deadline:
            for method, path in every:
                try:
                    answer = client.request(method, path, json=BODIES.get(path))
                except httpx.TransportError:
                    continue  # the port is not open yet
                seen[(path, answer.status_code)] += 1
                if answer.status_code == 503:
                    body = answer.json()
                    if set(body) != {"error", "status"} or "Retry-After" not in answer.headers:
                        bad.append((method, path, answer.headers, body))
                elif answer.status_code >= 500:
                    bad.append((method, path, answer.status_code, answer.text[:200]))
                if path == "/health" and answer.status_code == 200:
                    ready = True
                    break
    assert ready, "the worker never became ready"
    not_ready = sum(n for (path, code), n in seen.items() if code == 503)
    print(f"\n{sum(seen.values())} requests before ready, {not_ready} answered 503")
    assert not_ready > 0, "no request reached the worker before it was ready"
    assert bad == []
