"""The systems a trace is replayed against, each started and stopped by the harness.

* ``direct``: every read is an upstream call (what a bot without a cache does);
* ``nginx``: Debian's nginx as a caching reverse proxy, config generated here;
* ``quotacache-1`` / ``quotacache-2``: one or two workers, reads with ``?wait=2``; with
  ``--broker kafka``, ``quotacache-kafka-1`` / ``-2`` on a real Kafka.

Each system says how a read becomes a URL, how to tell fresh data from its answer, and
which processes to charge CPU and memory to.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from bench.trace import Limits, Read
from quotacache.dev.broker import free_port
from quotacache.dev.processes import ChildProcess, process_tree, start_worker
from quotacache.services import CRYPTOMETER

API_KEY = "bench-key"
WAIT = 2.0


def upstream_path(read: Read) -> str:
    """The simulator's path and query for a read, as the cryptometer profile builds it."""
    spec = CRYPTOMETER["endpoints"][read.endpoint]
    params = dict(spec["params"])
    if spec["symbol_param"] and read.symbol != "*":
        params[spec["symbol_param"]] = spec["symbol_format"].format(
            symbol=read.symbol, symbol_lower=read.symbol.lower())
    return spec["path"] + "?" + "&".join(f"{k}={v}" for k, v in sorted(params.items()))


def cpu_seconds(pids: list[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def peak_rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


class System:
    name = "system"
    base_url = ""
    #: Told of the trace's volatility spike, as a bot would tell quotacache.
    hears_signals = False

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def url_for(self, index: int) -> str:
        """Where the ``index``-th read of the trace goes."""
        return self.base_url

    def path(self, read: Read) -> str:
        raise NotImplementedError

    def generated_at(self, body: dict) -> float | None:
        """When the upstream made the data this answer carries (None: no data)."""
        data = body.get("data", body)
        while isinstance(data, dict) and "generated_at" not in data and "data" in data:
            data = data["data"]
        return data.get("generated_at") if isinstance(data, dict) else None

    def pids(self) -> list[int]:
        return []


class Direct(System):
    name = "direct"

    def __init__(self, sim_url: str):
        self.base_url = sim_url

    def path(self, read: Read) -> str:
        return upstream_path(read) + f"&api_key={API_KEY}"


NGINX_CONF = """
{user}
worker_processes 1;
daemon off;
master_process on;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    proxy_cache_path {work}/cache levels=1:2 keys_zone=api:10m max_size=100m inactive=1h;
    upstream simulator {{ server 127.0.0.1:{sim_port}; keepalive 32; }}
    server {{
        listen 127.0.0.1:{port};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_cache api;
        proxy_cache_key $uri$is_args$args;
        proxy_cache_lock on;
        proxy_cache_lock_timeout {wait}s;
        proxy_cache_use_stale updating error timeout http_429 http_500 http_502 http_503 http_504;
        proxy_cache_background_update on;
        proxy_ignore_headers Cache-Control Expires Set-Cookie;
        add_header X-Cache-Status $upstream_cache_status;
{locations}
    }}
}}
"""


class Nginx(System):
    """nginx with proxy_cache, lock, stale-on-error/429 and background update."""

    name = "nginx"

    def __init__(self, sim_port: int, work: Path, ttls: Mapping[str, float]):
        self.sim_port = sim_port
        self.ttls = ttls
        self.work = work / "nginx"
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def config(self) -> str:
        locations = "\n".join(
            f"        location {CRYPTOMETER['endpoints'][name]['path']} {{\n"
            f"            proxy_cache_valid 200 {int(ttl)}s;\n"
            f"            proxy_pass http://simulator$uri?$args&api_key={API_KEY};\n"
            f"        }}" for name, ttl in self.ttls.items())
        # As root, nginx's workers would become "nobody" and not reach a private temp dir.
        user = "user root;" if os.getuid() == 0 else ""
        return NGINX_CONF.format(user=user, work=self.work, sim_port=self.sim_port, port=self.port,
                                 wait=int(WAIT), locations=locations)

    def start(self) -> None:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(binary).exists():
            raise SystemExit("nginx is not installed (make bench installs Debian's nginx-light)")
        self.work.mkdir(parents=True, exist_ok=True)
        (self.work / "nginx.conf").write_text(self.config())
        self.process = subprocess.Popen([binary, "-c", str(self.work / "nginx.conf"),
                                         "-p", str(self.work), "-e", str(self.work / "error.log")],
                                        start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                httpx.get(self.base_url + "/nothing", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise SystemExit(f"nginx did not start: {(self.work / 'error.log').read_text()}")

    def stop(self) -> None:
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGQUIT)
            self.process.wait(10)

    def path(self, read: Read) -> str:
        return upstream_path(read)

    def pids(self) -> list[int]:
        return process_tree(self.process.pid) if self.process else []


def quotacache_config(path: Path, app_id: str, broker_port: int | None, sim_url: str | None,
                      ttls: Mapping[str, float] | None = None,
                      limits: Limits | None = None, partitions: int | None = None,
                      broker_url: str | None = None) -> Path:
    """A benchmark worker's config: the cryptometer profile on the simulator, optional TTLs
    and limits (the trace's), and no per-client request limit (one load process would hit
    it: the read path is measured, not the guard). ``partitions`` unset: the broker's
    default (1 on the embedded broker, enough for one worker only; 4 on Kafka).
    ``broker_url``: a real Kafka instead of the embedded broker. ``broker_port`` and
    ``sim_url`` None: left to the environment (the compose topology sets both)."""
    endpoints = "\n".join(f'[services.cryptometer.endpoints.{name}]\nttl = "{int(ttl)}s"'
                          for name, ttl in (ttls or {}).items())
    own_limits = "\n".join(f"{name} = {json.dumps(values)}"
                           for name, values in (limits.as_config() if limits else {}).items())
    broker = (f'url = "{broker_url}"' if broker_url else
              f"embedded_port = {broker_port}" if broker_port else "")
    base_url = f'base_url = "{sim_url}"' if sim_url else ""
    path.write_text(f"""
app_id = "{app_id}"
topic_prefix = "{app_id}."
profiles = ["cryptometer"]
[broker]
{broker}
{f"partitions = {partitions}" if partitions else ""}
[web]
max_requests_per_second = 0
[services.cryptometer]
{base_url}
{own_limits}
{endpoints}
""")
    return path


class Quotacache(System):
    hears_signals = True

    def __init__(self, workers: int, broker_port: int, broker_pid: int, sim_url: str,
                 work: Path, ttls: Mapping[str, float], limits: Limits,
                 broker_url: str | None = None):
        self.name = f"quotacache-{workers}"
        if broker_url:
            self.name = f"quotacache-kafka-{workers}"
        self.workers = workers
        self.work = work / self.name
        self.work.mkdir(parents=True, exist_ok=True)
        self.config = quotacache_config(self.work / "quotacache.toml", f"bench-{self.name}",
                                        broker_port, sim_url, ttls, limits,
                                        # one worker per partition is active
                                        partitions=None if workers == 1 else 4,
                                        broker_url=broker_url)
        self.broker_pid = broker_pid
        self.children: list[ChildProcess] = []
        self.urls: list[str] = []

    def start(self) -> None:
        for n in range(self.workers):
            port = free_port()
            self.children.append(start_worker(
                self.config, port, log_path=self.work / f"w{n}.log",
                env={"CRYPTOMETER_API_KEY": API_KEY,
                     "QUOTACACHE_DATA_DIR": str(self.work / f"data{n}")}, timeout=90))
            self.urls.append(f"http://127.0.0.1:{port}")
        self.base_url = self.urls[0]
        deadline = time.monotonic() + 60
        while self.workers > 1:
            workers = httpx.get(f"{self.urls[-1]}/stats", timeout=5).json()["workers"]
            if list(workers.values()).count("ok") == self.workers:
                break
            if time.monotonic() > deadline:
                raise SystemExit("the workers did not form one group")
            time.sleep(0.5)

    def stop(self) -> None:
        for child in self.children:
            child.stop()

    def url_for(self, index: int) -> str:
        """Readers spread over the workers (each forwards to the key's owner)."""
        return self.urls[index % len(self.urls)]

    def path(self, read: Read) -> str:
        return f"/cache/cryptometer/{read.endpoint}/{read.symbol}?wait={WAIT:g}"

    def pids(self) -> list[int]:
        return [pid for child in self.children for pid in process_tree(child.pid)] + [
            self.broker_pid]
