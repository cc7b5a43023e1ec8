"""``python -m bench soak``: the embedded default under the demo's load, for a long time.

Starts what ``quotacache demo`` starts (embedded broker, simulator, one worker with the
demo's config) and drives the demo's load (``Load``: Zipf reads over HTTP and refresh
requests on the topic). Every ``--every`` seconds it samples the RSS of the worker and
of the broker, the records on every topic (true log ends: Tansu's ListOffsets is
wrong), the worker's counters (reads by status, upstream calls) and its generation.
Writes bench/results/soak.{json,md,png}: RSS over time, records per minute, hit rate,
and records per upstream call and per read.

    python -m bench soak [--hours 0.1] [--every 10] [--rate 50] [--env NAME=VALUE] [--name soak]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from quotacache.client import Client
from quotacache.dev.broker import EmbeddedBroker, free_port, true_end_offsets
from quotacache.dev.demo import Load, _config, placeholder_keys
from quotacache.dev.processes import ChildProcess, start_simulator, start_worker
from quotacache.settings import Settings, load_settings

RESULTS = Path(__file__).parent / "results"
SYMBOLS = ["BTC", "ETH", "SOL", "XRP", "DOGE", "ADA", "AVAX", "LINK"]


def rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def topic_records(bootstrap: str) -> dict[str, int]:
    """Records on each topic now (sum of true log ends over its partitions)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                group_id=None)
    await consumer.start()
    try:
        topics = await consumer.topics()
        partitions = [TopicPartition(t, p) for t in topics
                      for p in (consumer.partitions_for_topic(t) or ())]
        reported = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    corrected = await true_end_offsets(bootstrap, reported)
    counts: Counter[str] = Counter()
    for tp, offset in corrected.items():
        counts[tp.topic] += int(offset)
    return dict(counts)


async def sample(http: httpx.AsyncClient, web_url: str, bootstrap: str, worker_pid: int,
                 broker_pid: int, load: Load, began: float) -> dict:
    row: dict = {"t": round(time.monotonic() - began, 1),
                 "worker_rss_mb": round(rss_mb(worker_pid), 1),
                 "broker_rss_mb": round(rss_mb(broker_pid), 1),
                 "reads": dict(load.status), "requests": load.requests}
    with contextlib.suppress(Exception):
        stats = (await http.get(f"{web_url}/stats?scope=local")).json()
        row["upstream_calls"] = stats.get("upstream_calls")
        row["hits"], row["misses"] = stats.get("hits"), stats.get("misses")
        row["stale_served"] = stats.get("stale_served")
        row["generation"] = 1 + (stats.get("events") or {}).get("rotations", 0)
    with contextlib.suppress(Exception):
        row["topics"] = await topic_records(bootstrap)
    return row


async def drive(settings, web_url: str, bootstrap: str, worker_pid: int, broker_pid: int,
                seconds: float, every: float, rate: float, out: list[dict]) -> None:
    until = time.monotonic() + seconds
    began = time.monotonic()
    async with Client(settings, base_url=web_url) as client, \
            httpx.AsyncClient(timeout=5.0) as http:
        load = Load(client, web_url, SYMBOLS, rate)
        task = asyncio.create_task(load.run(until))
        while not task.done():
            row = await sample(http, web_url, bootstrap, worker_pid, broker_pid, load, began)
            out.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "topics"}), flush=True)
            await asyncio.wait({task}, timeout=every)
        await task
        out.append(await sample(http, web_url, bootstrap, worker_pid, broker_pid, load, began))
        await load.http.aclose()


@dataclass
class Stack:
    work: Path
    settings: Settings
    broker: EmbeddedBroker
    worker: ChildProcess
    web_url: str

    @property
    def broker_pid(self) -> int:
        assert self.broker.process is not None
        return self.broker.process.pid


@contextlib.contextmanager
def demo_stack(prefix: str, worker_env: dict[str, str] | None = None,
               sim_latency: str = "0.2-0.5") -> Iterator[Stack]:
    """The demo's config on free ports: its embedded broker, the simulator and one worker,
    stopped (and the data dir removed) on the way out."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    placeholder_keys("bench-key")
    broker_port, sim_port, web_port = free_port(), free_port(), free_port()
    config = _config(work, broker_port, sim_port, web_port)
    broker = EmbeddedBroker(broker_port, log_path=work / "broker.log").start()
    children = []
    try:
        children.append(start_simulator(sim_port, latency=sim_latency,
                                        log_path=work / "sim.log"))
        children.append(start_worker(config, web_port, log_path=work / "worker.log",
                                     env=worker_env))
        yield Stack(work, load_settings(config), broker, children[-1],
                    f"http://127.0.0.1:{web_port}")
    finally:
        for child in reversed(children):
            child.stop()
        broker.stop()
        shutil.rmtree(work / "data", ignore_errors=True)


def run(seconds: float, every: float, rate: float, extra_env: dict[str, str]) -> dict:
    rows: list[dict] = []
    with demo_stack("quotacache-soak-", extra_env) as stack:
        asyncio.run(drive(stack.settings, stack.web_url, stack.broker.bootstrap,
                          stack.worker.pid, stack.broker_pid, seconds, every, rate, rows))
    return {"seconds": seconds, "rate": rate, "every": every, "env": extra_env,
            "machine": f"{os.cpu_count()} cores, Python {sys.version.split()[0]}",
            "load_average": os.getloadavg()[0], "samples": rows, "workdir": str(stack.work)}


def per_unit(samples: list[dict]) -> dict:
    """Records produced per upstream call and per read between the first and last sample
    with figures, each topic's growth summed sample to sample (a topic that shrank was
    re-created by a rotation: its records count from zero)."""
    have = [s for s in samples if s.get("topics") and s.get("upstream_calls") is not None]
    if len(have) < 2:
        return {}
    first, last = have[0], have[-1]
    minutes = (last["t"] - first["t"]) / 60
    growth: Counter[str] = Counter()
    for prev, cur in zip(have, have[1:], strict=False):
        for topic, n in cur["topics"].items():
            before = prev["topics"].get(topic, 0)
            growth[topic] += n - before if n >= before else n
    calls = last["upstream_calls"] - first["upstream_calls"]
    reads = sum(last["reads"].values()) - sum(first["reads"].values())
    total = sum(growth.values())
    return {"minutes": round(minutes, 2), "upstream_calls": calls, "reads": reads,
            "records": total, "records_per_minute": round(total / minutes, 1) if minutes else None,
            "records_per_call": round(total / calls, 2) if calls else None,
            "records_per_read": round(total / reads, 3) if reads else None,
            "per_topic_per_minute": {t: round(n / minutes, 1) for t, n in
                                     growth.most_common() if n > 0}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=0.1)
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--rate", type=float, default=50.0,
                        help="reads + requests per second (the demo's)")
    parser.add_argument("--env", action="append", default=[],
                        help="NAME=VALUE for the worker "
                             "(e.g. QUOTACACHE_BROKER__ROTATE_RECORDS=5000)")
    parser.add_argument("--name", default="soak", help="results file name")
    args = parser.parse_args(argv)
    env = dict(item.split("=", 1) for item in args.env)
    result = run(args.hours * 3600, args.every, args.rate, env)
    result["per_unit"] = per_unit(result["samples"])
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    from bench import soak_report
    soak_report.write(result, RESULTS / args.name)
    print(json.dumps(result["per_unit"], indent=1))


if __name__ == "__main__":
    main()
