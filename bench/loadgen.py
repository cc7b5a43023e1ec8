"""HTTP load from its own process, so the client's CPU is not counted as the server's.

    python -m bench.loadgen URL --paths-file F --rate 1000 --duration 10      (open loop)
    python -m bench.loadgen URL --paths-file F --concurrency 32 --duration 10 (closed loop)

Open loop: requests start on a fixed schedule whatever the answers do, and latency is
measured from the scheduled start, so a stall is not hidden by sending less (no
coordinated omission). Closed loop: N connections each send the next request as soon as
the last one is answered; reads/s is the throughput. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections import Counter

import aiohttp


def summary(latencies: list[float], statuses: Counter[str], elapsed: float) -> dict:
    cuts = statistics.quantiles(latencies, n=1000) if len(latencies) > 1 else [0.0] * 999
    return {"requests": len(latencies), "elapsed_s": round(elapsed, 2),
            "per_s": round(len(latencies) / elapsed, 1),
            "p50_ms": round(cuts[499] * 1000, 3), "p99_ms": round(cuts[989] * 1000, 3),
            "p999_ms": round(cuts[998] * 1000, 3), "statuses": dict(statuses)}


async def open_loop(url: str, paths: list[str], rate: float, duration: float) -> dict:
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(url, connector=connector) as http:
        async def one(path: str, due: float) -> None:
            try:
                async with http.get(path) as response:
                    await response.read()
                    statuses[response.headers.get("X-Cache", str(response.status))] += 1
            except aiohttp.ClientError as exc:
                statuses[type(exc).__name__] += 1
            latencies.append(time.perf_counter() - due)

        tasks = []
        start = time.perf_counter() + 0.05
        total = int(rate * duration)
        for i in range(total):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(paths[i % len(paths)], due)))
        await asyncio.gather(*tasks)
    return summary(latencies, statuses, time.perf_counter() - start)


async def closed_loop(url: str, paths: list[str], concurrency: int, duration: float) -> dict:
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(url, connector=connector) as http:
        stop = time.perf_counter() + duration

        async def connection(offset: int) -> None:
            i = offset
            while time.perf_counter() < stop:
                began = time.perf_counter()
                async with http.get(paths[i % len(paths)]) as response:
                    await response.read()
                    statuses[response.headers.get("X-Cache", str(response.status))] += 1
                latencies.append(time.perf_counter() - began)
                i += concurrency

        start = time.perf_counter()
        await asyncio.gather(*(connection(n) for n in range(concurrency)))
    return summary(latencies, statuses, time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--paths-file", required=True, help="one request path per line")
    parser.add_argument("--rate", type=float, help="requests per second (open loop)")
    parser.add_argument("--concurrency", type=int, help="connections (closed loop)")
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args()
    with open(args.paths_file) as lines:
        paths = [line.strip() for line in lines if line.strip()]
    if args.rate:
        result = asyncio.run(open_loop(args.url, paths, args.rate, args.duration))
    else:
        result = asyncio.run(closed_loop(args.url, paths, args.concurrency or 32,
                                         args.duration))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
