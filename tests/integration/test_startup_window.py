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


WRITES = {"POST", "PUT", "PATCH", "DELETE"}


@pytest.mark.both_brokers
def test_every_route_answers_503_until_the_worker_is_ready(deployment):
    worker = deployment.start_worker(wait=False)
    every = routes(deployment.settings) + [("GET", "/events?service=cryptometer")]
    # Each write is followed by a /health: readiness never goes back, so a write accepted
    # while the worker was ready is followed by a /health 200.
    asked = [request for route in every
             for request in ([route, ("GET", "/health")] if route[0] in WRITES else [route])]
    answers: list[tuple[str, str, int]] = []  # (method, path, status), in order
    bad = []
    deadline = time.monotonic() + 90
    with httpx.Client(base_url=worker.url, timeout=5) as client:
        ready = False
        while not ready and time.monotonic() < deadline:
            for method, path in asked:
                try:
                    answer = client.request(method, path, json=BODIES.get(path))
                except httpx.TransportError:
                    continue  # the port is not open yet
                answers.append((method, path, answer.status_code))
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
    seen = Counter((method, status) for method, _, status in answers)
    not_ready = sum(n for (_, code), n in seen.items() if code == 503)
    writes_refused = sum(n for (method, code), n in seen.items()
                         if method in WRITES and code == 503)
    # No write accepted before recovery: the loop ended at the first /health 200, so a
    # write answered 2xx may only be the one asked just before it (the worker became
    # ready between the previous /health and that write).
    accepted = [i for i, (method, _, code) in enumerate(answers)
                if method in WRITES and 200 <= code < 300]
    print(f"\n{len(answers)} requests before ready, {not_ready} answered 503 "
          f"({writes_refused} of them writes); by (method, status): {dict(seen)}; "
          f"writes accepted: {[answers[i] for i in accepted]}; last: {answers[-4:]}")
    assert not_ready > 0, "no request reached the worker before it was ready"
    assert writes_refused > 0, "no write reached the worker before it was ready"
    assert all(i == len(answers) - 2 for i in accepted), [answers[i] for i in accepted]
    assert bad == []
