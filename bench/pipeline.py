"""Pipeline figures of one worker, each beside a baseline measured in the same run.

    .venv/bin/python -m bench.pipeline [--duplicates 20000] [--reads 5000]

* worker start-up: spawn to /health ready, fresh and with a kept data dir;
* duplicate refresh requests absorbed per second when every key is fresh, against a
  bare aiokafka consumer reading the same messages (the broker's ceiling);
* HTTP hit latency p50/p99 (sequential, keep-alive), against a bare aiohttp server
  answering a JSON body of the same size on the same loopback.

Writes bench/results/pipeline.json. Not part of CI.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from quotacache.client import Client
from quotacache.dev.broker import EmbeddedBroker, free_port
from quotacache.dev.processes import ChildProcess, start_simulator, start_worker
from quotacache.settings import load_settings

RESULTS = Path(__file__).parent / "results"
KEYS = [("ticker", s) for s in ("BTC", "ETH", "SOL", "XRP", "ADA")] + \
       [("ls_ratio", s) for s in ("BTC", "ETH", "SOL", "XRP", "ADA")]


def quantiles(samples: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples, n=100)
    return cuts[49] * 1000, cuts[98] * 1000


async def warm(settings, url: str) -> None:
    async with Client(settings, base_url=url) as client:
        for endpoint, symbol in KEYS:
            await client.request_refresh("cryptometer", endpoint, symbol)
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient(base_url=url) as http:
            while time.monotonic() < deadline:
                states = [(await http.get(f"/cache/cryptometer/{e}/{s}")).headers.get("X-Cache")
                          for e, s in KEYS]
                if all(state == "HIT" for state in states):
                    return
                await asyncio.sleep(0.2)
    raise SystemExit("keys did not become fresh in 30 s")


async def duplicates(settings, bootstrap: str, url: str, count: int) -> dict:
    topic = settings.topic_prefix + "refresh"
    messages = []
    for i in range(count):
        endpoint, symbol = KEYS[i % len(KEYS)]
        key = f"cryptometer/{endpoint}/{symbol}"
        value = json.dumps({"service": "cryptometer", "endpoint": endpoint, "symbol": symbol})
        messages.append((json.dumps(key).encode(), value.encode()))
    async with httpx.AsyncClient(base_url=url) as http:
        saved_before = (await http.get("/stats")).json()["calls_saved"]
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20,
                                    max_batch_size=256 * 1024)
        await producer.start()
        started = time.perf_counter()
        for key, value in messages:
            await producer.send(topic, value=value, key=key)
        await producer.flush()
        await producer.stop()
        produced = time.perf_counter() - started
        while True:
            stats = (await http.get("/stats")).json()
            if stats["calls_saved"] - saved_before >= count:
                break
            await asyncio.sleep(0.05)
        absorbed = time.perf_counter() - started
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest")
    await consumer.start()
    started, seen = time.perf_counter(), 0
    while seen < count:
        batch = await consumer.getmany(timeout_ms=500)
        seen += sum(len(v) for v in batch.values())
    baseline = time.perf_counter() - started
    await consumer.stop()
    return {"requests": count, "produce_s": round(produced, 2),
            "absorbed_per_s": round(count / absorbed), "upstream_calls_added": 0,
            "baseline_consume_per_s": round(seen / baseline),
            "ratio_to_baseline": round((count / absorbed) / (seen / baseline), 4)}


BARE_SERVER = """
import sys
from aiohttp import web
body = sys.argv[2]
async def h(request):
    return web.Response(text=body, content_type="application/json", headers={"X-Cache": "HIT"})
app = web.Application(); app.router.add_get("/{tail:.*}", h)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def read_latency(url: str, count: int) -> tuple[list[float], str]:
    samples = []
    with httpx.Client(base_url=url) as http:
        body = http.get("/cache/cryptometer/ticker/BTC").text
        for i in range(count):
            endpoint, symbol = KEYS[i % len(KEYS)]
            started = time.perf_counter()
            response = http.get(f"/cache/cryptometer/{endpoint}/{symbol}")
            samples.append(time.perf_counter() - started)
            assert response.headers["X-Cache"] == "HIT", response.text
    return samples, body


def bare_server(body: str) -> tuple[subprocess.Popen[bytes], str]:
    """The baseline: a bare aiohttp server answering ``body`` to every GET, once it answers."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", BARE_SERVER, str(port), body])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            httpx.get(url)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.terminate()
    raise SystemExit("bare server did not start")


def bare_latency(body: str, count: int) -> list[float]:
    proc, url = bare_server(body)
    try:
        samples = []
        with httpx.Client(base_url=url) as http:
            for _ in range(count):
                started = time.perf_counter()
                http.get("/cache/x")
                samples.append(time.perf_counter() - started)
        return samples
    finally:
        proc.terminate()
        proc.wait()


def embedded_setup(app_id: str) -> tuple[Path, EmbeddedBroker, int, Path]:
    """A work dir, an embedded broker started in it, a free port for the simulator and
    a worker config for both."""
    from bench.systems import quotacache_config

    os.environ.setdefault("CRYPTOMETER_API_KEY", "bench-key")
    work = Path(tempfile.mkdtemp(prefix=f"quotacache-{app_id}-"))
    broker = EmbeddedBroker(free_port(), log_path=work / "broker.log").start()
    sim_port = free_port()
    config = quotacache_config(work / "quotacache.toml", app_id, broker.port,
                               f"http://127.0.0.1:{sim_port}")
    return work, broker, sim_port, config


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duplicates", type=int, default=20000)
    parser.add_argument("--reads", type=int, default=5000)
    args = parser.parse_args()
    work, broker, sim_port, config = embedded_setup("bench")
    web_port = free_port()
    settings = load_settings(config)
    children: list[ChildProcess] = []
    results: dict = {"machine": f"{os.cpu_count()} cores", "python": sys.version.split()[0]}
    try:
        children.append(start_simulator(sim_port, latency="0.2-0.5", log_path=work / "sim.log"))
        env = {"QUOTACACHE_DATA_DIR": str(work / "data")}
        started = time.perf_counter()
        worker = start_worker(config, web_port, log_path=work / "w1.log", env=env)
        children.append(worker)
        results["startup_fresh_s"] = round(time.perf_counter() - started, 2)
        url = f"http://127.0.0.1:{web_port}"
        asyncio.run(warm(settings, url))
        calls = httpx.get(f"{url}/stats").json()["upstream_calls"]
        results["duplicates"] = asyncio.run(duplicates(settings, broker.bootstrap, url,
                                                       args.duplicates))
        results["duplicates"]["upstream_calls_added"] = (
            httpx.get(f"{url}/stats").json()["upstream_calls"] - calls)
        samples, body = read_latency(url, args.reads)
        bare = bare_latency(body, args.reads)
        (p50, p99), (b50, b99) = quantiles(samples), quantiles(bare)
        results["http_hit"] = {"reads": args.reads, "p50_ms": round(p50, 3),
                               "p99_ms": round(p99, 3), "bare_aiohttp_p50_ms": round(b50, 3),
                               "bare_aiohttp_p99_ms": round(b99, 3),
                               "p50_ratio_to_bare": round(p50 / b50, 2)}
        worker.stop()
        children.remove(worker)
        started = time.perf_counter()
        worker = start_worker(config, web_port, log_path=work / "w2.log", env=env)
        children.append(worker)
        results["startup_kept_data_dir_s"] = round(time.perf_counter() - started, 2)
    finally:
        for child in children:
            child.stop()
        broker.stop()
    save(results, "pipeline.json")


def save(results: dict, name: str) -> None:
    """Write a benchmark's figures under bench/results and show them."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / name).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
