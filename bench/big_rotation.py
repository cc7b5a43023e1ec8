"""``python -m bench big-rotation``: one rotation with a large cache.

Fills the cache of one worker (demo config, own embedded broker) with ``--keys`` entries
through the data topic, as ``bench lean`` does, then lets the default triggers rotate
(the fill alone adds 2 records a key: data and changelog). Samples the RSS of worker and
broker every second until every key landed and a minute has passed since (and since the
first rotation), and reads keys throughout: the longest read and any status >= 500.
Writes bench/results/big_rotation.json.

    python -m bench big-rotation [--keys 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import time
from pathlib import Path

import httpx

from bench.lean import fill
from bench.soak import demo_stack, rss_mb

RESULTS = Path(__file__).parent / "results"


async def watch(url: str, keys: int, worker_pid: int, broker_pid: int, log: Path,
                timeout: float, settle: float = 60.0) -> dict:
    samples, slowest, errors = [], 0.0, 0
    began = time.monotonic()
    rotated_at = filled_at = None
    async with httpx.AsyncClient(base_url=url, timeout=30.0) as http:
        while time.monotonic() - began < timeout:
            t0 = time.monotonic()
            answer = await http.get(f"/cache/cryptometer/ticker/K{random.randrange(keys)}")
            slowest = max(slowest, time.monotonic() - t0)
            errors += answer.status_code >= 500
            samples.append({"t": round(time.monotonic() - began, 1),
                            "worker_rss_mb": round(rss_mb(worker_pid), 1),
                            "broker_rss_mb": round(rss_mb(broker_pid), 1)})
            if rotated_at is None and "rotation to generation" in log.read_text():
                rotated_at = samples[-1]["t"]
            if filled_at is None and len(samples) % 10 == 0:  # /stats reads every entry
                stats = (await http.get("/stats?scope=local")).json()
                entries = stats["freshness"].get("cryptometer/ticker", {}).get("entries", 0)
                if entries >= keys:
                    filled_at = samples[-1]["t"]
            if rotated_at is not None and filled_at is not None and (
                    samples[-1]["t"] > max(rotated_at, filled_at) + settle):
                break
            await asyncio.sleep(1.0)
    found = re.findall(r"rotation to generation \d+: (\{.*\})", log.read_text())
    return {"samples": samples, "slowest_read_s": round(slowest, 3), "reads_5xx": errors,
            "rotated_at_s": rotated_at, "filled_at_s": filled_at, "rotations": found}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench big-rotation", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--timeout", type=float, default=1200.0)
    args = parser.parse_args(argv)
    with demo_stack("quotacache-bigrot-", {"QUOTACACHE_BROKER__ROTATE_CHECK": "5"}) as stack:
        worker_pid, broker_pid = stack.worker.pid, stack.broker_pid
        before = {"worker_rss_mb": rss_mb(worker_pid), "broker_rss_mb": rss_mb(broker_pid)}
        began = time.monotonic()
        asyncio.run(fill(stack.settings, args.keys))
        print(f"{args.keys} keys produced in {time.monotonic() - began:.0f} s", flush=True)
        result = asyncio.run(watch(stack.web_url, args.keys, worker_pid, broker_pid,
                                   stack.work / "worker.log", args.timeout))
        result.update(keys=args.keys, before=before)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "big_rotation.json").write_text(json.dumps(result, indent=1) + "\n")
    peak = max(result["samples"], key=lambda s: s["broker_rss_mb"])
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=1))
    print("broker peak", peak, "last", result["samples"][-1])


if __name__ == "__main__":
    main()
