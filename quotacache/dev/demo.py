"""``quotacache demo``: embedded broker + upstream simulator + one worker + a realistic load.

Everything runs on loopback in a fresh temporary directory and is stopped (by PID) on
Ctrl-C or after ``--duration``. The terminal shows live figures: reads and their cache
status, read latency, upstream calls against the simulator's accepted and rejected counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
from rich.console import Console
from rich.live import Live
from rich.table import Table

from quotacache.client import Client
from quotacache.dev.broker import EmbeddedBroker, free_port, port_open
from quotacache.dev.processes import start_simulator, start_worker
from quotacache.settings import load_settings

#: Endpoints the demo reads, most popular first (critical data is read most).
DEMO_READS = [("cryptometer", "ticker"), ("cryptometer", "rapid_movements"),
              ("cryptometer", "ls_ratio"), ("cryptometer", "liquidation_data_v2"),
              ("cryptometer", "open_interest"), ("cryptometer", "ai_screener"),
              ("kingfisher", "liquidation_map"), ("kingfisher", "rsi_heatmap"),
              ("cryptometer", "coinlist"), ("kingfisher", "professional_report")]


def _port(wanted: int) -> int:
    return wanted if not port_open("127.0.0.1", wanted) else free_port()


def _config(workdir: Path, broker_port: int, sim_port: int, web_port: int) -> Path:
    sim = f"http://127.0.0.1:{sim_port}"
    path = workdir / "quotacache.toml"
    path.write_text(f"""
app_id = "quotacache-demo"
data_dir = "{workdir / 'data'}"
[broker]
url = "embedded"
embedded_port = {broker_port}
[web]
port = {web_port}
[services.cryptometer]
base_url = "{sim}"
[services.kingfisher]
base_url = "{sim}/kingfisher"
[services.kingfisher_airtable]
base_url = "{sim}/airtable"
[services.kingfisher_telegram]
base_url = "{sim}/telegram"
""")
    return path


class Load:
    """Drives reads (HTTP) and refresh requests (topic) and keeps their figures."""

    def __init__(self, client: Client, web_url: str, symbols: list[str], rate: float,
                 reads: list[tuple[str, str]] = DEMO_READS):
        self.client = client
        self.reads = reads
        self.http = httpx.AsyncClient(base_url=web_url, timeout=10.0)
        self.symbols = symbols
        self.rate = rate
        self.status: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.requests = 0
        self.random = random.Random(7)

    def _pick(self) -> tuple[str, str, str]:
        # Zipf-like popularity: the first endpoints and symbols are asked far more often.
        service, endpoint = self.reads[min(int(self.random.paretovariate(1.2)) - 1,
                                           len(self.reads) - 1)]
        symbol = self.symbols[min(int(self.random.paretovariate(1.0)) - 1,
                                  len(self.symbols) - 1)]
        return service, endpoint, symbol

    async def one(self) -> None:
        service, endpoint, symbol = self._pick()
        if self.random.random() < 0.2:
            await self.client.request_refresh(service, endpoint, symbol)
            self.requests += 1
            return
        started = time.perf_counter()
        response = await self.http.get(f"/cache/{service}/{endpoint}/{symbol}")
        self.latencies.append(time.perf_counter() - started)
        self.status[response.headers.get("X-Cache", str(response.status_code))] += 1

    async def run(self, until: float) -> None:
        interval = 1.0 / self.rate
        while time.monotonic() < until:
            with contextlib.suppress(httpx.HTTPError):
                await self.one()
            await asyncio.sleep(interval)

    def percentile(self, q: float) -> float:
        recent = self.latencies[-2000:]
        if len(recent) < 2:
            return 0.0
        return statistics.quantiles(recent, n=100)[int(q) - 1] * 1000


def _table(load: Load, worker: dict, sim: dict, elapsed: float, web_url: str) -> Table:
    table = Table(title=f"quotacache demo: {elapsed:5.0f}s   {web_url}", show_header=False)
    reads = sum(load.status.values())
    table.add_row("reads (HIT / STALE / MISS)",
                  f"{reads}  ({load.status['HIT']} / {load.status['STALE']} / "
                  f"{load.status['MISS']})")
    table.add_row("hit rate (reads)", f"{load.status['HIT'] / reads:.1%}" if reads else "-")
    table.add_row("read latency p50 / p99", f"{load.percentile(50):.2f} / "
                  f"{load.percentile(99):.2f} ms")
    table.add_row("refresh requests published", str(load.requests))
    table.add_row("upstream calls (worker)", str(worker.get("upstream_calls", "-")))
    table.add_row("calls saved (fresh or in flight)", str(worker.get("calls_saved", "-")))
    table.add_row("rate-limit blocks", str(worker.get("rate_limit_blocks", "-")))
    table.add_row("simulator accepted / rejected (429)",
                  f"{sim.get('accepted', '-')} / {sim.get('rejected', '-')}")
    return table


#: The environment variables holding the built-in profiles' API keys.
PROFILE_KEYS = ("CRYPTOMETER_API_KEY", "KINGFISHER_API_KEY", "AIRTABLE_API_KEY",
                "TELEGRAM_BOT_TOKEN")


def placeholder_keys(value: str) -> None:
    """Give every built-in profile an API key where none is set: the simulator accepts
    any (the demo and the benchmarks never reach a real API)."""
    for name in PROFILE_KEYS:
        os.environ.setdefault(name, value)


def run(duration: float | None, web_port: int, sim_port: int, broker_port: int,
        symbols: list[str], rate: float) -> int:
    console = Console()
    workdir = Path(tempfile.mkdtemp(prefix="quotacache-demo-"))
    broker_port, sim_port, web_port = _port(broker_port), _port(sim_port), _port(web_port)
    placeholder_keys("demo-key")
    config = _config(workdir, broker_port, sim_port, web_port)
    settings = load_settings(config)
    web_url = f"http://127.0.0.1:{web_port}"
    children = []
    broker = EmbeddedBroker(broker_port, log_path=workdir / "broker.log")
    started = time.monotonic()
    # SIGTERM (a service manager, `kill`) stops the children as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        with console.status("starting the embedded broker, the simulator and a worker..."):
            broker.start()
            children.append(start_simulator(sim_port, log_path=workdir / "simulator.log"))
            children.append(start_worker(config, web_port, log_path=workdir / "worker.log"))
        console.print(f"worker ready in {time.monotonic() - started:.1f}s: {web_url} "
                      f"(stats: {web_url}/stats), simulator http://127.0.0.1:{sim_port}, "
                      f"logs in {workdir}")
        asyncio.run(_drive(settings, web_url, sim_port, symbols, rate, duration, console))
    except KeyboardInterrupt:
        console.print("stopping...")
    finally:
        # A second Ctrl-C or SIGTERM must not cut the clean-up short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for child in reversed(children):
            child.stop()
        broker.stop()
        shutil.rmtree(workdir / "data", ignore_errors=True)
    return 0


async def _drive(settings, web_url: str, sim_port: int, symbols: list[str], rate: float,
                 duration: float | None, console: Console) -> None:
    until = time.monotonic() + (duration if duration else 10 * 365 * 86400)
    began = time.monotonic()
    async with Client(settings, base_url=web_url) as client, \
            httpx.AsyncClient(timeout=5.0) as http:
        load = Load(client, web_url, symbols, rate)
        task = asyncio.create_task(load.run(until))
        worker: dict = {}
        sim: dict = {}
        try:
            with Live(_table(load, worker, sim, 0, web_url), console=console,
                      refresh_per_second=2) as live:
                while not task.done():
                    with contextlib.suppress(httpx.HTTPError, ValueError):
                        worker = (await http.get(f"{web_url}/stats")).json()
                        sim = (await http.get(f"http://127.0.0.1:{sim_port}/_sim/stats")).json()
                    live.update(_table(load, worker, sim, time.monotonic() - began, web_url))
                    await asyncio.wait({task}, timeout=1.0)
            await task
        finally:
            task.cancel()  # the display failed or was interrupted: the load stops with it
        await load.http.aclose()
