"""Nobody changes anything without the token, no client floods a worker, everything
listens on loopback, and the API key and the token never appear in any output of a run."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from quotacache.client import Client

from .conftest import API_KEY, poll

pytestmark = pytest.mark.integration

TOKEN = "tok-7f3a9c1e55d2"
MUTATING = [("POST", "/refresh", {"service": "cryptometer", "endpoint": "ticker",
                                  "symbol": "BTC"}),
            ("POST", "/batch", {"symbols": ["BTC"], "endpoints": ["cryptometer/ticker"]}),
            ("POST", "/symbols", {"symbols": ["SOL"], "endpoints": ["cryptometer/ticker"]}),
            ("DELETE", "/symbols", {"symbols": ["SOL"]}),
            ("POST", "/strategy", {"service": "cryptometer", "strategy": "NORMAL"})]


def with_token(deployment, extra: str = ""):
    deployment.configure(f'\n[web]\ntoken = "{TOKEN}"\n{extra}')


def test_every_mutating_endpoint_needs_the_token_and_reads_do_not(deployment):
    with_token(deployment)
    worker = deployment.start_worker()
    for method, path, body in MUTATING:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            answer = httpx.request(method, worker.url + path, json=body, headers=headers)
            assert answer.status_code == 401, (method, path, headers)
            assert answer.headers["WWW-Authenticate"] == "Bearer"
        answer = httpx.request(method, worker.url + path, json=body,
                               headers={"Authorization": f"Bearer {TOKEN}"})
        assert answer.status_code in (200, 202), (method, path, answer.text)
    for path in ("/cache/cryptometer/ticker/BTC", "/stats", "/status", "/symbols",
                 "/strategy", "/metrics", "/", "/dashboard/snapshot", "/openapi.json"):
        assert worker.get(path).status_code in (200, 202), path

    async def through_the_client():  # the client sends the token from its settings
        async with Client(deployment.settings, base_url=worker.url) as client:
            return await client.monitor(["ADA"], ["cryptometer/ticker"])

    assert "ADA" in asyncio.run(through_the_client())["symbols"]


def test_a_client_over_the_request_rate_gets_429_and_others_do_not_suffer(deployment):
    deployment.configure('\n[web]\nmax_requests_per_second = 0.5\nrequest_burst = 10\n')
    worker = deployment.start_worker()
    with httpx.Client(base_url=worker.url) as http:
        codes = [http.get("/stats").status_code for _ in range(30)]
        # One more request per 2 s after the burst: a slow machine adds a few, not 20.
        assert codes[:10] == [200] * 10 and codes.count(429) >= 15, codes
        limited = http.get("/stats")
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
        assert "requests per second" in limited.json()["error"]
        poll(lambda: http.get("/stats").status_code == 200, timeout=10, interval=1,
             message="room again after a pause")
    # Another address is not held back (127.0.0.2 is loopback too).
    other = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"))
    assert other.get(worker.url + "/stats").status_code == 200
    assert worker.child.alive()


def listening_addresses(port: int) -> set[str]:
    """Local addresses of the sockets listening on ``port`` (from /proc/net/tcp*)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:
                found.add(address)
    return found


def test_worker_and_simulator_listen_on_loopback_only(deployment):
    worker = deployment.start_worker()
    sim_port = int(deployment.simulator.url.rsplit(":", 1)[1])
    assert listening_addresses(worker.port) == {"0100007F"}  # 127.0.0.1
    assert listening_addresses(sim_port) == {"0100007F"}


def test_the_key_and_the_token_appear_in_no_output_of_a_run(deployment):
    # Every error path is taken in turn: the breaker must not close the service meanwhile.
    deployment.configure(f'breaker_failures = 100\n[web]\ntoken = "{TOKEN}"\n')
    worker = deployment.start_worker()
    sim = deployment.simulator
    outputs = []
    headers = {"Authorization": f"Bearer {TOKEN}"}
    httpx.post(worker.url + "/batch", headers=headers, json={
        "symbols": ["BTC", "ETH"], "endpoints": ["cryptometer/ticker", "cryptometer/ls_ratio"]})
    poll(lambda: worker.get("/cache/cryptometer/ticker/BTC").json()["status"] == "HIT",
         timeout=20)
    for mode in ("500", "error_envelope", "garbage"):  # the error paths log and count
        failed = sim.stats()["failed"]
        sim.configure(fail={"cryptometer": mode})
        httpx.post(worker.url + "/refresh", headers=headers, json={
            "service": "cryptometer", "endpoint": "ticker", "symbol": "BTC", "force": True})
        poll(lambda m=mode, f=failed: sim.stats()["failed"] > f, timeout=20, message=mode)
    sim.configure(fail={"cryptometer": None})
    httpx.post(worker.url + "/refresh", json={"service": "cryptometer"})  # 401
    for path in ("/cache/cryptometer/ticker/BTC", "/cache/cryptometer/ls_ratio/ETH", "/stats",
                 "/status", "/status/cryptometer", "/metrics", "/dashboard/snapshot",
                 "/openapi.json", "/symbols", "/strategy", "/cache/nope/x/y"):
        outputs.append(worker.get(path).text)
    records = asyncio.run(deployment.consume_all(lambda t: t.startswith(deployment.app_id)))
    assert records  # its own topics and Faust's changelogs
    outputs += [part.decode(errors="replace") for r in records for part in (r.key, r.value)
                if part]
    outputs.append(worker.child.log_tail(1_000_000))
    assert len(outputs) > 20
    for secret in (API_KEY, TOKEN):
        leaks = [text[:200] for text in outputs if secret in text]
        assert not leaks, f"{secret} leaked: {leaks[:2]}"
