"""Read-side figures, each beside a baseline measured in the same run.

    .venv/bin/python -m bench.reads [--rate 1000] [--duration 10] [--concurrency 32]

* HTTP hit latency p50/p99/p99.9 at a fixed 1k reads/s (open loop, from a separate load
  process), against a bare aiohttp server answering the same body on the same loopback;
* throughput of one worker (closed loop, 32 connections), against the same bare server,
  and of two workers (one load process each, reads routed to the key's owner);
* ``LocalReplica.get`` per call, against a plain dict lookup of the same keys.

Writes bench/results/reads.json. Not part of CI. The load processes share the machine's
cores with the workers: on 2 cores the figures are a floor, not a ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bench.pipeline import KEYS, bare_server, embedded_setup, save, warm
from quotacache.client.replica import LocalReplica
from quotacache.dev.broker import free_port
from quotacache.dev.processes import ChildProcess, start_simulator, start_worker
from quotacache.settings import load_settings


def load(url: str, paths_file: Path, duration: float, *, rate: float | None = None,
         concurrency: int | None = None) -> subprocess.Popen[str]:
    mode = ["--rate", str(rate)] if rate else ["--concurrency", str(concurrency)]
    return subprocess.Popen([sys.executable, "-m", "bench.loadgen", url, "--paths-file",
                             str(paths_file), "--duration", str(duration), *mode],
                            stdout=subprocess.PIPE, text=True)


def result(process: subprocess.Popen[str]) -> dict:
    out, _ = process.communicate(timeout=300)
    return json.loads(out)


async def replica_latency(settings, count: int) -> dict:
    async with LocalReplica(settings, ["cryptometer"]) as replica:
        assert all(replica.get("cryptometer", e, s)["status"] == "HIT" for e, s in KEYS)
        started = time.perf_counter()
        for i in range(count):
            endpoint, symbol = KEYS[i % len(KEYS)]
            replica.get("cryptometer", endpoint, symbol)
        per_get = (time.perf_counter() - started) / count
    plain = {f"cryptometer/{e}/{s}": {"data": 1} for e, s in KEYS}
    started = time.perf_counter()
    for i in range(count):
        endpoint, symbol = KEYS[i % len(KEYS)]
        plain.get(f"cryptometer/{endpoint}/{symbol}")
    per_dict = (time.perf_counter() - started) / count
    return {"gets": count, "per_get_us": round(per_get * 1e6, 2),
            "dict_get_us": round(per_dict * 1e6, 3), "ratio_to_dict": round(per_get / per_dict, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--replica-gets", type=int, default=200_000)
    args = parser.parse_args()
    work, broker, sim_port, config = embedded_setup("bench-reads")
    settings = load_settings(config)
    paths = work / "paths.txt"
    paths.write_text("".join(f"/cache/cryptometer/{e}/{s}\n" for e, s in KEYS))
    children: list[ChildProcess] = []
    results: dict = {"machine": f"{os.cpu_count()} cores", "python": sys.version.split()[0],
                     "keys": len(KEYS), "duration_s": args.duration}
    bare = None
    try:
        children.append(start_simulator(sim_port, latency="0.01-0.03",
                                        log_path=work / "sim.log"))
        ports = [free_port(), free_port()]
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        first = start_worker(config, ports[0], log_path=work / "w1.log",
                             env={"QUOTACACHE_DATA_DIR": str(work / "d1")})
        children.append(first)
        asyncio.run(warm(settings, urls[0]))
        body = httpx.get(f"{urls[0]}/cache/cryptometer/ticker/BTC").text
        bare, bare_url = bare_server(body)

        print(f"open loop at {args.rate:g} reads/s for {args.duration:g} s ...", flush=True)
        worker = result(load(urls[0], paths, args.duration, rate=args.rate))
        baseline = result(load(bare_url, paths, args.duration, rate=args.rate))
        results["hit_latency_open_loop"] = {
            "rate_per_s": args.rate, "quotacache": worker, "bare_aiohttp": baseline,
            "p50_ratio_to_bare": round(worker["p50_ms"] / baseline["p50_ms"], 2),
            "p99_ratio_to_bare": round(worker["p99_ms"] / baseline["p99_ms"], 2)}

        print(f"closed loop, {args.concurrency} connections ...", flush=True)
        worker = result(load(urls[0], paths, args.duration, concurrency=args.concurrency))
        baseline = result(load(bare_url, paths, args.duration, concurrency=args.concurrency))
        results["throughput_one_worker"] = {
            "quotacache": worker, "bare_aiohttp": baseline,
            "ratio_to_bare": round(worker["per_s"] / baseline["per_s"], 2)}

        print("two workers ...", flush=True)
        second = start_worker(config, ports[1], log_path=work / "w2.log",
                              env={"QUOTACACHE_DATA_DIR": str(work / "d2")})
        children.append(second)
        deadline = time.monotonic() + 60
        while len([s for s in httpx.get(f"{urls[1]}/stats").json()["workers"].values()
                   if s == "ok"]) < 2:
            if time.monotonic() > deadline:
                raise SystemExit("the second worker did not join")
            time.sleep(0.5)
        asyncio.run(warm(settings, urls[1]))
        loads = [load(url, paths, args.duration, concurrency=args.concurrency // 2)
                 for url in urls]
        both = [result(process) for process in loads]
        results["throughput_two_workers"] = {
            "per_worker": both, "total_per_s": round(sum(r["per_s"] for r in both), 1)}

        print("LocalReplica.get ...", flush=True)
        results["local_replica"] = asyncio.run(replica_latency(settings, args.replica_gets))
    finally:
        if bare is not None:
            bare.terminate()
            bare.wait()
        for child in children:
            child.stop()
        broker.stop()
    save(results, "reads.json")


if __name__ == "__main__":
    main()
