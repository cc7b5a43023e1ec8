"""Replays a trace against one system and measures what a user would compare.

Reads start on the trace's schedule whatever the answers do (open loop), and latency is
measured from the scheduled start. The upstream simulator is reset before each system,
so every system starts with the whole budget and an empty upstream log.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from bench.systems import System, cpu_seconds, peak_rss_mb
from bench.trace import SERVICE, Read, Trace
from quotacache.client import Client

#: Data younger than its TTL plus this is fresh (the upstream's own latency is counted).
FRESH_SLACK = 0.5


class Outcome:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.answered = 0
        self.fresh = 0
        self.critical_fresh = 0
        self.statuses: dict[str, int] = {}
        #: One row per read, in trace order, when asked for (``--reads-log``): where
        #: a system loses fresh or answered reads, read by read.
        self.rows: dict[int, dict] = {}

    def add(self, latency: float, status: str, answered: bool, fresh: bool,
            critical: bool) -> None:
        self.latencies.append(latency)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.answered += answered
        self.fresh += fresh
        self.critical_fresh += fresh and critical


async def replay(system: System, trace: Trace, settings: Any = None,
                 log_reads: bool = False) -> Outcome:
    outcome = Outcome()
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=512)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
        async def one(index: int, read: Read, due: float) -> None:
            base = system.url_for(index)
            status, answered, fresh = "error", False, False
            age = None
            try:
                async with http.get(base + system.path(read)) as response:
                    body = await response.read()
                    status = str(response.status)
                    if response.status == 200:
                        made = system.generated_at(json.loads(body))
                        answered = made is not None
                        age = None if made is None else time.time() - made
                        fresh = age is not None and age <= trace.ttl(read) + FRESH_SLACK
            except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
                status = type(exc).__name__
            latency = time.perf_counter() - due
            outcome.add(latency, status, answered, fresh, trace.critical(read))
            if log_reads:
                outcome.rows[index] = {
                    "at": read.at, "key": read.key, "status": status, "answered": answered,
                    "fresh": fresh, "ms": round(latency * 1000, 1),
                    "age": None if age is None else round(age, 3)}

        async def progress() -> None:
            while True:
                await asyncio.sleep(15)
                done = len(outcome.latencies)
                print(f"  {done}/{len(trace.reads)} reads, {outcome.answered} answered, "
                      f"{outcome.fresh} fresh", flush=True)

        reporter = asyncio.create_task(progress())
        spike_start, _, spike_symbols = trace.spike or (0.0, 0.0, [])
        spiked = not system.hears_signals or trace.spike is None
        tasks = []
        start = time.perf_counter() + 0.1
        for index, read in enumerate(trace.reads):
            due = start + read.at
            if not spiked and read.at >= spike_start:
                spiked = True  # quotacache hears of the spike, as a bot would tell it
                tasks.append(asyncio.create_task(signal(settings, spike_symbols)))
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(index, read, due)))
        await asyncio.gather(*tasks)
        reporter.cancel()
    return outcome


async def signal(settings: Any, symbols: list[str]) -> None:
    async with Client(settings) as client:
        for symbol in symbols:
            await client.signal_volatility(symbol, 0.95)


def measure(system: System, trace: Trace, sim_url: str, settings: Any = None,
            reads_log: Path | None = None) -> dict:
    """Start the system, replay the trace, stop it; return its row of the table. With
    ``reads_log``, every read's outcome goes to ``<reads_log>/<system>.jsonl``."""
    system.start()
    try:
        httpx.post(f"{sim_url}/_sim/reset").raise_for_status()
        limits = {name: {SERVICE: values} for name, values in trace.limits.as_config().items()}
        httpx.post(f"{sim_url}/_sim/config", json=limits).raise_for_status()
        pids = system.pids()
        broker = [getattr(system, "broker_pid", 0)]
        cpu_before, broker_before = cpu_seconds(pids), cpu_seconds(broker)
        began = time.perf_counter()
        outcome = asyncio.run(replay(system, trace, settings, reads_log is not None))
        elapsed = time.perf_counter() - began
        sim = httpx.get(f"{sim_url}/_sim/stats").json()
        cpu = cpu_seconds(pids) - cpu_before
        broker_cpu = cpu_seconds(broker) - broker_before
        rss = peak_rss_mb(system.pids())
        broker_rss = peak_rss_mb(broker) if broker[0] else None
    finally:
        system.stop()
    if reads_log is not None:
        reads_log.mkdir(parents=True, exist_ok=True)
        lines = (json.dumps(outcome.rows[i]) for i in sorted(outcome.rows))
        (reads_log / f"{system.name}.jsonl").write_text("\n".join(lines) + "\n")
    reads = len(trace.reads)
    critical = sum(trace.critical(read) for read in trace.reads)
    calls = sim["accepted"] + sim["rejected"]
    cuts = statistics.quantiles(outcome.latencies, n=100)
    return {
        "system": system.name, "reads": reads, "upstream_calls": calls,
        "rejected_429": sim["rejected"],
        "calls_per_oracle": round(calls / trace.oracle_calls(), 2),
        "fresh": round(outcome.fresh / reads, 4), "answered": round(outcome.answered / reads, 4),
        "fresh_reads": outcome.fresh, "answered_reads": outcome.answered,
        "critical_fresh_reads": outcome.critical_fresh,
        "critical_fresh": round(outcome.critical_fresh / critical, 4) if critical else None,
        "p50_ms": round(cuts[49] * 1000, 2), "p99_ms": round(cuts[98] * 1000, 1),
        "reads_per_s": round(reads / elapsed, 1),
        "cpu_s": round(cpu, 2) if pids else None,
        "cpu_broker_s": round(broker_cpu, 2) if broker[0] else None,
        "peak_rss_mb": round(rss, 1) if pids else None,
        "peak_rss_broker_mb": round(broker_rss, 1) if broker_rss is not None else None,
        "statuses": outcome.statuses,
    }
