"""``python -m bench lean``: the lean-worker figures (issue 15), each beside its target.

* idle CPU: ``quotacache worker`` with the default config (its own embedded broker),
  launch to ready, then utime+stime of worker and broker over ``--idle-seconds``;
* CPU per read: the zipf trace replayed against one worker (as ``python -m bench
  --only quotacache-1``), CPU of worker and broker over the replay;
* hits over HTTP: wrk on one hot key at 32 connections and at 1, against the worker,
  nginx's proxy_cache and a bare aiohttp server answering the same body, same run;
* memory: RSS of the worker holding ``--keys`` cached keys (produced to a data topic);
* ``LocalReplica.get`` per call on those keys, beside a plain dict lookup.

Writes bench/results/lean.{json,md}; a missed target is printed loudly. CPU is measured
from /proc (utime+stime), so a loaded machine changes it little; wrk's throughput and
latencies are wall-clock figures and are only comparable within one run.

    python -m bench lean [--idle-seconds 60] [--keys 100000] [--wrk-seconds 10] [--no-trace]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench import trace
from bench.harness import measure
from bench.pipeline import bare_server, warm
from bench.systems import (
    API_KEY,
    Nginx,
    Quotacache,
    cpu_seconds,
    quotacache_config,
    upstream_path,
)
from quotacache.dev.broker import EmbeddedBroker, free_port
from quotacache.dev.processes import ChildProcess, process_tree, start_simulator, start_worker
from quotacache.settings import load_settings

RESULTS = Path(__file__).parent / "results"
TARGETS = {  # name: (figure, comparison, bound)
    "idle_cpu_pct": ("idle worker + broker, % of a core", "<=", 2.0),
    "ready_s": ("launch to ready, s", "<=", 3.0),
    "cpu_s_trace": ("CPU s for the zipf trace (worker + broker)", "<=", 6.0),
    "hit_ratio_to_nginx_32": ("hits/s at 32 connections / nginx's", ">=", 0.3),
    "hit_p99_ms_32": ("hit p99 at 32 connections, ms", "<=", 2.0),
    "hit_p99_ms_1": ("hit p99 at 1 connection, ms", "<=", 1.0),
    "rss_mb_keys": ("worker RSS with the cached keys, MB", "<=", 200.0),
    "replica_get_us": ("LocalReplica.get, us", "<=", 2.0),
}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def idle(seconds: float, work: Path) -> dict:
    """Default config, own embedded broker: time to ready, then CPU while idle."""
    env = {**os.environ, "QUOTACACHE_BROKER__EMBEDDED_PORT": str(free_port()),
           "QUOTACACHE_DATA_DIR": str(work / "idle-data")}
    env.pop("QUOTACACHE_CONFIG", None)
    port = free_port()
    began = time.monotonic()
    worker = ChildProcess(["worker", "--web-port", str(port), "-l", "warn"], env=env,
                          log_path=work / "idle.log")
    try:
        worker.wait_http(f"http://127.0.0.1:{port}/health", 120)
        ready = time.monotonic() - began
        time.sleep(5)  # the first assignment's commits and timers settle
        pids = process_tree(worker.pid)  # the worker, then the broker it started
        before, at = [cpu_seconds([pid]) for pid in pids], time.monotonic()
        time.sleep(seconds)
        used = [cpu_seconds([pid]) - cpu for pid, cpu in zip(pids, before, strict=True)]
        elapsed = time.monotonic() - at
        return {"ready_s": round(ready, 2), "seconds": round(elapsed, 1),
                "idle_cpu_pct": round(100 * sum(used) / elapsed, 2),
                "idle_worker_pct": round(100 * used[0] / elapsed, 2),
                "idle_broker_pct": round(100 * sum(used[1:]) / elapsed, 2)}
    finally:
        worker.stop()


def cpu_per_read(work: Path) -> dict:
    the_trace = trace.named("zipf", 7, None, None)
    broker = EmbeddedBroker(free_port(), log_path=work / "trace-broker.log").start()
    sim_port = free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    simulator = start_simulator(sim_port, latency="0.2-0.5", log_path=work / "trace-sim.log")
    try:
        ttls = {n: the_trace.ttls[n] for n in {read.endpoint for read in the_trace.reads}}
        system = Quotacache(1, broker.port, broker.process.pid, sim_url, work, ttls,
                            the_trace.limits)
        row = measure(system, the_trace, sim_url, load_settings(system.config))
    finally:
        simulator.stop()
        broker.stop()
    return {"reads": row["reads"], "cpu_s_trace": row["cpu_s"],
            "cpu_broker_s": row["cpu_broker_s"],
            "cpu_ms_per_read": round(1000 * row["cpu_s"] / row["reads"], 2),
            "fresh": row["fresh"], "p99_ms": row["p99_ms"]}


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(url: str, connections: int, seconds: float) -> dict:
    out = subprocess.run(["wrk", f"-t{min(2, connections)}", f"-c{connections}",
                          f"-d{seconds:g}s", "--latency", url],
                         capture_output=True, text=True, check=True).stdout
    figures = {"per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    for cut in ("50", "99"):
        value, unit = re.search(rf"^\s+{cut}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        figures[f"p{cut}_ms"] = round(float(value) * _UNITS[unit], 3)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    figures["non_2xx"] = int(errors.group(1)) if errors else 0
    return figures


async def fill(settings, count: int) -> None:
    """``count`` ticker entries, produced to the data topic as the fetch agent would."""
    from aiokafka import AIOKafkaProducer

    from quotacache.streams.records import DataRecord
    producer = AIOKafkaProducer(bootstrap_servers=settings.broker.bootstrap_servers(),
                                linger_ms=20, max_batch_size=512 * 1024)
    await producer.start()
    try:
        topic = settings.topic_prefix + "data.cryptometer.ticker"
        now = time.time()
        for i in range(count):
            record = DataRecord(service="cryptometer", endpoint="ticker", symbol=f"K{i}",
                                data={"price": i, "volume": i * 3.5, "symbol": f"K{i}"},
                                fetched_at=now, ttl=3600)
            await producer.send(topic, key=json.dumps(record.key).encode(),
                                value=record.to_json())
        await producer.flush()
    finally:
        await producer.stop()


async def replica_get(settings, count: int, gets: int) -> dict:
    from quotacache.client.replica import LocalReplica

    symbols = [f"K{random.randrange(count)}" for _ in range(1000)]
    async with LocalReplica(settings, ["cryptometer"]) as replica:
        assert replica.get("cryptometer", "ticker", symbols[0])["status"] == "HIT"
        started = time.perf_counter()
        for i in range(gets):
            replica.get("cryptometer", "ticker", symbols[i % 1000])
        per_get = (time.perf_counter() - started) / gets
    plain = {f"cryptometer/ticker/{s}": 1 for s in symbols}
    started = time.perf_counter()
    for i in range(gets):
        plain.get(f"cryptometer/ticker/{symbols[i % 1000]}")
    per_dict = (time.perf_counter() - started) / gets
    return {"replica_get_us": round(per_get * 1e6, 2), "dict_get_us": round(per_dict * 1e6, 3)}


def hits_and_memory(work: Path, seconds: float, keys: int) -> dict:
    broker = EmbeddedBroker(free_port(), log_path=work / "broker.log").start()
    sim_port = free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    config = quotacache_config(work / "quotacache.toml", "bench-lean", broker.port, sim_url,
                               {"ticker": 3600, "ls_ratio": 3600})
    settings = load_settings(config)
    children: list[ChildProcess] = []
    bare = nginx = None
    out: dict = {}
    try:
        children.append(start_simulator(sim_port, latency="0.01-0.03",
                                        log_path=work / "sim.log"))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        worker = start_worker(config, port, log_path=work / "worker.log",
                              env={"CRYPTOMETER_API_KEY": API_KEY,
                                   "QUOTACACHE_DATA_DIR": str(work / "data")}, timeout=120)
        children.append(worker)
        asyncio.run(warm(settings, url))
        path = "/cache/cryptometer/ticker/BTC"
        body = httpx.get(url + path).text
        bare, bare_url = bare_server(body)
        nginx = Nginx(sim_port, work, {"ticker": 3600})
        nginx.start()
        nginx_path = upstream_path(trace.Read(0.0, "ticker", "BTC"))
        httpx.get(nginx.base_url + nginx_path)
        out["rss_mb_warm"] = round(rss_mb(worker.pid), 1)
        targets = {"quotacache": url + path, "nginx": nginx.base_url + nginx_path,
                   "bare_aiohttp": bare_url + path}
        for connections in (32, 1):
            for name, target in targets.items():
                print(f"wrk {name}, {connections} connection(s) ...", flush=True)
                out[f"{name}_{connections}"] = wrk(target, connections, seconds)
        q32, n32 = out["quotacache_32"], out["nginx_32"]
        out["hit_ratio_to_nginx_32"] = round(q32["per_s"] / n32["per_s"], 3)
        out["hit_ratio_to_bare_32"] = round(q32["per_s"] / out["bare_aiohttp_32"]["per_s"], 3)
        out["hit_p99_ms_32"] = q32["p99_ms"]
        out["hit_p99_ms_1"] = out["quotacache_1"]["p99_ms"]

        print(f"{keys} keys into the cache ...", flush=True)
        began = time.monotonic()
        asyncio.run(fill(settings, keys))
        deadline = time.monotonic() + 1200
        while True:
            held = httpx.get(url + "/stats?scope=local", timeout=60).json()
            entries = held.get("freshness", {}).get("cryptometer/ticker", {}).get("entries", 0)
            if entries >= keys:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"only {entries} of {keys} keys landed in 20 min")
            time.sleep(2)
        out["keys"] = keys
        out["fill_s"] = round(time.monotonic() - began, 1)
        out["rss_mb_keys"] = round(rss_mb(worker.pid), 1)
        print("LocalReplica.get ...", flush=True)
        out.update(asyncio.run(replica_get(settings, keys, 200_000)))
    finally:
        if bare is not None:
            bare.terminate()
            bare.wait()
        if nginx is not None:
            nginx.stop()
        for child in children:
            child.stop()
        broker.stop()
    return out


def missed(results: dict) -> list[str]:
    out = []
    for name, (what, op, bound) in TARGETS.items():
        value = results.get(name)
        if value is None:
            continue
        if (value > bound) if op == "<=" else (value < bound):
            out.append(f"{what}: {value} (target {op} {bound})")
    return out


def markdown(results: dict) -> str:
    lines = ["# Lean worker (issue 15)", "", f"{results['machine']}", "",
             "| figure | value | target |", "|---|---|---|"]
    for name, (what, op, bound) in TARGETS.items():
        if name in results:
            lines.append(f"| {what} | {results[name]} | {op} {bound} |")
    lines += ["", "wrk (hits/s, p50 / p99 ms):", "", "| server | 32 connections | 1 connection |",
              "|---|---|---|"]
    for name in ("quotacache", "nginx", "bare_aiohttp"):
        if f"{name}_32" in results:
            a, b = results[f"{name}_32"], results[f"{name}_1"]
            lines.append(f"| {name} | {a['per_s']:.0f}/s, {a['p50_ms']} / {a['p99_ms']} | "
                         f"{b['per_s']:.0f}/s, {b['p50_ms']} / {b['p99_ms']} |")
    lines += ["", "Missed targets:" if results["missed"] else "Every target met.", ""]
    lines += [f"* {line}" for line in results["missed"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench lean", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--wrk-seconds", type=float, default=10.0)
    parser.add_argument("--no-trace", action="store_true", help="skip CPU per read")
    parser.add_argument("--only", help="comma-separated parts: idle,trace,hits")
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    os.environ["CRYPTOMETER_API_KEY"] = API_KEY
    parts = set((args.only or "idle,trace,hits").split(","))
    if args.no_trace:
        parts.discard("trace")
    work = Path(tempfile.mkdtemp(prefix="quotacache-lean-"))
    results: dict = {"machine": f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, "
                                f"load average {os.getloadavg()[0]:.1f} at start"}
    if "idle" in parts:
        print(f"idle worker, {args.idle_seconds:g} s ...", flush=True)
        results.update(idle(args.idle_seconds, work))
    if "trace" in parts:
        print("zipf trace against one worker ...", flush=True)
        results.update(cpu_per_read(work))
    if "hits" in parts:
        results.update(hits_and_memory(work, args.wrk_seconds, args.keys))
    results["missed"] = missed(results)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "lean.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "lean.md").write_text(markdown(results))
    print(markdown(results))
    for line in results["missed"]:
        print(f"!!! TARGET MISSED: {line}", flush=True)
