"""Accelerated soak: tens of thousands of refreshes through one worker on its own embedded
broker, with a small rotation budget so the topics are re-created several times under
load (quotacache/dev/rotation.py). The broker's memory must level off under the bound,
and nothing may be lost or refused on the way: every key read before stays readable,
pins and monitored symbols stay, no read answers 5xx, the upstream sees no 429.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid

import httpx
import pytest

from bench.soak import rss_mb
from quotacache.client import Client
from quotacache.dev.broker import EmbeddedBroker, free_port
from quotacache.dev.processes import start_worker
from quotacache.settings import load_settings
from quotacache.streams.records import RefreshRequest

from .conftest import API_KEY

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SYMBOLS = [f"S{i:02d}" for i in range(40)]
ENDPOINTS = ["ticker", "ls_ratio", "open_interest"]
KEYS = [(e, s) for e in ENDPOINTS for s in SYMBOLS]
REFRESHES = 24_000
#: The broker's bound (issue 16), and the rotation budget that makes the test fast.
BROKER_BOUND_MB = 150.0
WORKER_BOUND_MB = 200.0
BUDGET = 5_000
LIMITS = {"cryptometer": ["600/60", "100/10"]}
ENDPOINT_LIMITS = {"cryptometer": ["300/60"]}


@pytest.fixture
def own_broker(tmp_path):
    """A broker for this test alone: its RSS is this worker's doing only."""
    broker = EmbeddedBroker(free_port(), log_path=tmp_path / "tansu.log").start()
    try:
        yield broker
    finally:
        broker.stop()


def write_config(tmp_path, port: int, sim_url: str):
    app_id = f"soak{uuid.uuid4().hex[:6]}"
    path = tmp_path / "quotacache.toml"
    path.write_text(f"""
app_id = "{app_id}"
topic_prefix = "{app_id}."
profiles = ["cryptometer"]
data_dir = "{tmp_path / 'data'}"
[broker]
url = "embedded"
embedded_port = {port}
rotate_records = {BUDGET}
rotate_check = "2s"
[web]
max_requests_per_second = 0
[services.cryptometer]
base_url = "{sim_url}"
limits = {LIMITS['cryptometer']!r}
endpoint_limits = {ENDPOINT_LIMITS['cryptometer']!r}
""".replace("'", '"'))
    return path


class Readers:
    """Reads random keys over HTTP until stopped; remembers every status seen."""

    def __init__(self, url: str):
        self.http = httpx.AsyncClient(base_url=url, timeout=10.0)
        self.codes: dict[int, int] = {}
        #: Key -> the rotations done when it was first answered with data.
        self.had_data: dict[tuple[str, str], int] = {}
        self.rotations = 0
        self.random = random.Random(16)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            endpoint, symbol = self.random.choice(KEYS)
            answer = await self.http.get(f"/cache/cryptometer/{endpoint}/{symbol}")
            self.codes[answer.status_code] = self.codes.get(answer.status_code, 0) + 1
            if answer.status_code == 200:
                self.had_data.setdefault((endpoint, symbol), self.rotations)
            await asyncio.sleep(0.02)


async def publish(client: Client, stop: asyncio.Event, readers: Readers) -> int:
    """REFRESHES refresh requests over about 40 s (1 in 50 forced, so data keeps coming),
    in small bursts; on a machine too busy for two rotations by then, more, up to 80 s."""
    rng = random.Random(7)
    sent = 0
    deadline = time.monotonic() + 80.0
    while sent < REFRESHES or (readers.rotations < 2 and time.monotonic() < deadline):
        batch = [RefreshRequest(service="cryptometer", endpoint=e, symbol=s,
                                force=rng.random() < 0.02)
                 for e, s in (rng.choice(KEYS) for _ in range(100))]
        sent += await client.request_many(batch)
        await asyncio.sleep(1 / 6)
    stop.set()
    return sent


def test_soak_rotates_under_load_memory_levels_off_nothing_lost(tmp_path, own_broker,
                                                                simulator):
    simulator.configure(limits=LIMITS, endpoint_limits=ENDPOINT_LIMITS)
    config = write_config(tmp_path, own_broker.port, simulator.url)
    port = free_port()
    worker = start_worker(config, port, log_path=tmp_path / "worker.log",
                          env={"CRYPTOMETER_API_KEY": API_KEY})
    url = f"http://127.0.0.1:{port}"
    try:
        httpx.post(url + "/strategy", json={"service": "cryptometer",
                                            "strategy": "CONSERVATIVE"}).raise_for_status()
        httpx.post(url + "/symbols", json={"symbols": ["BTC", "ETH"],
                                           "endpoints": ["cryptometer/ticker"]}
                   ).raise_for_status()
        samples = asyncio.run(drive(url, load_settings(config), own_broker, worker.pid))
        stats = httpx.get(url + "/stats?scope=local").json()
    finally:
        worker.stop()
    rotations, rss, readers, sent, worker_rss = samples
    log = worker.log_tail(200)
    print("rotations", rotations, "broker RSS MB", rss, "codes", readers.codes)
    assert sent >= REFRESHES
    assert stats["events"].get("rotations", 0) >= 2, log
    assert not [c for c in readers.codes if c >= 500], readers.codes
    assert 429 not in readers.codes, readers.codes
    assert simulator.stats()["rejected"] == 0
    assert max(rss) <= BROKER_BOUND_MB, rss
    assert max(worker_rss) <= WORKER_BOUND_MB, worker_rss
    # Levelling off: after the first rotation, the broker never again grows past the
    # size it reached before it (what a rotation frees is reused).
    first = next(i for i, n in enumerate(rotations) if n >= 1)
    assert max(rss[first:]) <= max(rss[:first + 1]) + 5.0, list(zip(rotations, rss, strict=True))


async def drive(url: str, settings, broker: EmbeddedBroker, worker_pid: int):
    stop = asyncio.Event()
    readers = Readers(url)
    rotations: list[int] = []
    rss: list[float] = []
    worker_rss: list[float] = []
    async with Client(settings, base_url=url) as client, httpx.AsyncClient() as http:
        tasks = [asyncio.create_task(readers.run(stop)) for _ in range(2)]
        publisher = asyncio.create_task(publish(client, stop, readers))
        while not stop.is_set():
            stats = (await http.get(url + "/stats?scope=local")).json()
            rotations.append(stats["events"].get("rotations", 0))
            readers.rotations = rotations[-1]
            rss.append(rss_mb(broker.process.pid))
            worker_rss.append(rss_mb(worker_pid))
            await asyncio.sleep(0.5)
        sent = await publisher
        await asyncio.gather(*tasks)
        final = (await http.get(url + "/stats?scope=local")).json()["events"]["rotations"]
        # Keys answered with data before a rotation are answered with data after it.
        carried = sorted(key for key, seen in readers.had_data.items() if seen < final)
        assert len(carried) >= len(KEYS) // 2, readers.had_data
        for endpoint, symbol in carried:
            answer = await http.get(f"{url}/cache/cryptometer/{endpoint}/{symbol}")
            assert answer.status_code == 200, (endpoint, symbol, answer.text)
        pins = (await http.get(url + "/strategy")).json()
        assert "CONSERVATIVE" in str(pins), pins
        symbols = (await http.get(url + "/symbols")).json()["symbols"]
        assert {"BTC", "ETH"} <= set(symbols), symbols
        await readers.http.aclose()
    return rotations, rss, readers, sent, worker_rss
