"""The topology of docker-compose.yml, run from Python where there is no Docker.

A real Kafka (KRaft, from the jars ``make`` fetches), the upstream simulator and two
workers, with the services, broker settings and worker environment of
``deploy/topology.toml``: the one list that docker-compose.yml follows too (a unit test
compares them). Host names become loopback addresses, and a port that is taken here is
replaced by a free one. Everything is stopped by PID on exit.

``--broker embedded`` puts the embedded broker (Tansu) where Kafka was, everything else
unchanged: the same two workers and simulator, for comparing the two brokers
(``python -m bench brokers`` does).

    python -m quotacache.dev.compose [--broker kafka|embedded] [--duration S] [--work DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quotacache.dev.broker import EmbeddedBroker, free_port, port_open
from quotacache.dev.kafka_broker import KafkaBroker, ensure_jars
from quotacache.dev.processes import ChildProcess, start_simulator, start_worker

TOPOLOGY = Path(__file__).resolve().parents[2] / "deploy" / "topology.toml"
BROKERS = ("kafka", "embedded")


@dataclass(frozen=True)
class Topology:
    """deploy/topology.toml, read."""

    kafka_version: str
    kafka_service: str
    kafka_port: int
    kafka_settings: dict[str, str]
    simulator_service: str
    simulator_port: int
    workers: list[tuple[str, int]]  # (service, web port)
    worker_env: dict[str, str]
    secrets: list[str]
    secret_default: str

    def env_for(self, kafka: str, simulator: str) -> dict[str, str]:
        """A worker's environment with these ``host:port`` for Kafka and the simulator,
        API keys from this process's environment where set."""
        env = {k: v.format(kafka=kafka, simulator=simulator)
               for k, v in self.worker_env.items()}
        return env | {name: os.environ.get(name) or self.secret_default
                      for name in self.secrets}


def load_topology(path: Path = TOPOLOGY) -> Topology:
    raw: dict[str, Any] = tomllib.loads(path.read_text())
    kafka, simulator = raw["kafka"], raw["simulator"]
    return Topology(
        kafka_version=kafka["version"], kafka_service=kafka["service"],
        kafka_port=int(kafka["port"]),
        kafka_settings={k: str(v) for k, v in kafka["settings"].items()},
        simulator_service=simulator["service"], simulator_port=int(simulator["port"]),
        workers=[(w["service"], int(w["web_port"])) for w in raw["workers"]],
        worker_env=dict(raw["worker_env"]),
        secrets=list(raw["worker_secrets"]["names"]),
        secret_default=raw["worker_secrets"]["default"],
    )


def _port(wanted: int) -> int:
    return free_port() if port_open("127.0.0.1", wanted) else wanted


@dataclass
class Stack:
    """The topology's processes on this machine, started in dependency order.

    ``broker``: ``kafka`` (the topology's) or ``embedded`` (Tansu in its place: the
    workers get ``QUOTACACHE_BROKER__URL=embedded`` and its port, nothing else changes).
    ``config``: the workers' configuration file (default: an empty one, everything from
    the environment as in the compose file); the topology's environment overrides it.
    """

    work: Path
    topology: Topology = field(default_factory=load_topology)
    broker: str = "kafka"
    config: Path | None = None
    simulator_latency: str = "0.2-0.5"
    kafka: KafkaBroker | None = None
    embedded: EmbeddedBroker | None = None
    simulator: ChildProcess | None = None
    workers: list[ChildProcess] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    sim_port: int = 0

    def __post_init__(self) -> None:
        if self.broker not in BROKERS:
            raise ValueError(f"broker is one of {BROKERS}, not {self.broker!r}")

    @property
    def simulator_url(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}"

    @property
    def bootstrap(self) -> str:
        """host:port of the running broker, whichever it is."""
        running = self.kafka or self.embedded
        assert running is not None, "the stack is not started"
        return running.bootstrap

    @property
    def broker_pid(self) -> int | None:
        if self.kafka is not None:
            return self.kafka.pid
        if self.embedded is not None and self.embedded.process is not None:
            return self.embedded.process.pid
        return None

    def worker_env(self, broker: str, simulator: str) -> dict[str, str]:
        """Every worker's environment with the broker and simulator at these host:port
        (the data dir aside, which is each worker's own)."""
        env = self.topology.env_for(broker, simulator)
        if self.broker == "embedded":
            env["QUOTACACHE_BROKER__URL"] = "embedded"
            env["QUOTACACHE_BROKER__EMBEDDED_PORT"] = broker.rsplit(":", 1)[1]
        return env

    def start(self, worker_timeout: float = 120.0) -> Stack:
        topo = self.topology
        try:
            if self.broker == "kafka":
                # Kafka's node.id and process.roles are KafkaBroker's own (node 1, combined).
                self.kafka = KafkaBroker(ensure_jars(), self.work / "kafka",
                                         port=_port(topo.kafka_port), props=topo.kafka_settings)
                self.kafka.start()
            else:
                self.work.mkdir(parents=True, exist_ok=True)
                self.embedded = EmbeddedBroker(_port(topo.kafka_port),
                                               log_path=self.work / "broker.log").start()
            self.sim_port = _port(topo.simulator_port)
            self.simulator = start_simulator(self.sim_port, latency=self.simulator_latency,
                                             log_path=self.work / "sim.log")
            env = self.worker_env(self.bootstrap, f"127.0.0.1:{self.sim_port}")
            config = self.config
            if config is None:
                config = self.work / "quotacache.toml"
                config.write_text(
                    "# everything comes from the environment, as in the compose file\n")
            for service, web_port in topo.workers:
                port = _port(web_port)
                data = self.work / service / "data"
                self.workers.append(start_worker(
                    config, port, log_path=self.work / f"{service}.log",
                    env=env | {"QUOTACACHE_DATA_DIR": str(data)}, timeout=worker_timeout))
                self.urls.append(f"http://127.0.0.1:{port}")
        except BaseException:
            self.stop()
            raise
        return self

    def pids(self) -> list[int]:
        """The broker's, the simulator's and each worker's process id."""
        children = [self.simulator, *self.workers]
        return [pid for pid in [self.broker_pid] if pid] + [
            c.pid for c in children if c is not None]

    def stop(self) -> None:
        for worker in reversed(self.workers):
            worker.stop()
        if self.simulator is not None:
            self.simulator.stop()
        if self.kafka is not None:
            self.kafka.stop()
        if self.embedded is not None:
            self.embedded.stop()

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m quotacache.dev.compose",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", choices=BROKERS, default="kafka",
                        help="Kafka, as in docker-compose.yml (default), or the embedded "
                             "broker in its place")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--work", type=Path, help="data and logs (default: a temp dir, removed)")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="quotacache-compose-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    began = time.monotonic()
    try:
        with Stack(work, broker=args.broker) as stack:
            name = (f"Kafka {stack.topology.kafka_version}" if args.broker == "kafka"
                    else "the embedded broker")
            print(f"{name} on {stack.bootstrap}, "
                  f"simulator on {stack.simulator_url}, workers on {', '.join(stack.urls)} "
                  f"(ready in {time.monotonic() - began:.0f} s; logs in {work}). "
                  "Ctrl-C stops everything.", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                deadline = time.monotonic() + (args.duration or float("inf"))
                while time.monotonic() < deadline and all(w.alive() for w in stack.workers):
                    time.sleep(0.5)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
