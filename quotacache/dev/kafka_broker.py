"""A real single-node Apache Kafka (KRaft, broker and controller in one JVM) on loopback.

Dev tooling for the tests, the benchmarks and trying quotacache on Kafka where there is no
Docker: quotacache itself stays pure Python and talks to any Kafka. The broker runs from
the jars that ``kafka-jars/pom.xml`` names, which Maven fetches from Maven Central into a
cache keyed by the pom and the Java version (``ensure_jars``; ``make`` does it). Where
Java 17+ or Maven Central is missing, ``unavailable_reason`` and ``KafkaUnavailable`` say
so in one line, and the tests that need Kafka skip with it.

Readiness is probed with a raw ApiVersions + Metadata exchange (`kafka_wire`, stdlib only), so this
module does not depend on the client library it helps to test. The JVM is tuned to start
fast and stay small (~2-3 s to ready with the class-data archive, ~140 MiB RSS, ~2 % of a
core idle), not for peak throughput.

    python -m quotacache.dev.kafka_broker fetch            # what make runs
    python -m quotacache.dev.kafka_broker run --port 9092  # a single node to try
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from quotacache.dev.broker import free_port, port_open
from quotacache.dev.kafka_jars import (
    CDS_ARCHIVE,
    KAFKA_VERSION,
    POM,
    KafkaUnavailable,
    fetch_jars,
    jars_dir,
    jars_present,
    locked,
)
from quotacache.dev.kafka_wire import metadata_broker_ports

BIND_ATTEMPTS = 3

#: Small, quick-starting JVM: C1 only and SerialGC cut start CPU (5.1 -> 2.9 s) and RSS
#: (~185 -> ~145 MiB) against a JVM with only -Xmx256m, and the broker's CPU for 200k
#: small records fell too (3.6 -> 1.8 s: no C2 compiles).
DEFAULT_JVM_OPTS: tuple[str, ...] = (
    "-Xms32m",
    "-Xmx256m",
    "-XX:MaxMetaspaceSize=128m",
    "-XX:ReservedCodeCacheSize=64m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:CICompilerCount=1",
    "-Xss512k",
    "-Xshare:auto",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)

#: Broker settings beyond listeners and paths (a caller's ``props`` override them). The
#: same choices as docker-compose.yml where both have one (deploy/topology.toml).
DEFAULT_PROPS: dict[str, str] = {
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "4",  # 50 by default: a slow first group join
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "transaction.state.log.num.partitions": "4",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
    "num.partitions": "4",
    "auto.create.topics.enable": "true",  # Kafka's default, and what Faust expects
    "default.replication.factor": "1",
    "min.insync.replicas": "1",
    "num.network.threads": "2",
    "num.io.threads": "4",
    "background.threads": "4",
    # 128 MiB of heap by default, allocated at start; 4 MiB still dedupes ~170k keys a pass
    "log.cleaner.dedupe.buffer.size": "4194304",
    "log.cleaner.threads": "1",
}


def new_cluster_id() -> str:
    """Kafka's Uuid string form, never starting with '-' (the format tool reads a flag)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


# -- the jars, ready to run: fetched, and their class-data archive built ------------

def ensure_jars(java: str = "java", *, pom: Path = POM, mvn_args: Sequence[str] = (),
                timeout: float = 900.0) -> Path:
    """The jars folder, fetched with Maven (and its class-data archive built) if missing.

    Raises KafkaUnavailable, in one line, where Java, Maven or Maven Central is missing.
    """
    directory = jars_dir(java, pom)
    if jars_present(directory) and (directory / CDS_ARCHIVE).is_file():
        return directory
    with locked(directory.parent):
        if not jars_present(directory):
            fetch_jars(directory, pom=pom, mvn_args=mvn_args, timeout=timeout)
        if not (directory / CDS_ARCHIVE).is_file():
            build_cds_archive(directory, java)
    return directory


def build_cds_archive(directory: Path, java: str = "java") -> None:
    """Record the classes a starting broker loads into ``directory/kafka.jsa``.

    A JDK dynamic class-data archive: later JVMs map those classes instead of parsing and
    verifying them (start to ready: 4.3 -> 3.0 s here). A truncated archive crashes a JVM
    (SIGBUS, JDK 17), so it is written under a temporary name and kept only if the dumping
    JVM exited on its own and a JVM with -Xshare:on maps it.
    """
    archive = directory / CDS_ARCHIVE
    tmp = archive.with_name(f"{CDS_ARCHIVE}.tmp{os.getpid()}")
    try:
        with tempfile.TemporaryDirectory(prefix="kafka-cds-") as data:
            broker = KafkaBroker(directory, Path(data), java=java, cds=False, stop_timeout=120)
            broker.server_jvm_opts += [f"-XX:ArchiveClassesAtExit={tmp}", "-Xlog:cds=off"]
            code = broker.start().stop()
            check = subprocess.run(  # in data: a crash leaves an hs_err file in its cwd
                [java, "-Xshare:on", f"-XX:SharedArchiveFile={tmp}", "-cp",
                 f"{directory}/*", "-version"], capture_output=True, timeout=60, cwd=data)
        if code in (0, 128 + signal.SIGTERM) and check.returncode == 0:
            tmp.replace(archive)
    finally:
        tmp.unlink(missing_ok=True)


def unavailable_reason(java: str = "java") -> str | None:
    """One line saying why Kafka cannot run here, or None once its jars are ready."""
    try:
        ensure_jars(java)
    except KafkaUnavailable as exc:
        return str(exc)
    return None


# -- the broker ------------------------------------------------------------------------

class KafkaBroker:
    """One Kafka process (broker+controller, node 1) keeping its data in ``data_dir``.

    ``start`` formats the storage when ``data_dir`` has none yet (a new cluster), else
    starts on the data and cluster id already there: like a real broker, a restart keeps
    every topic, offset and the cluster id. It returns once a Metadata request lists the
    broker. ``stop`` sends SIGTERM to the JVM's process group (a clean shutdown), SIGKILL
    after ``stop_timeout``. The JVM's output goes to ``data_dir/server.log``; it gets
    SIGTERM if the process that started it dies (no orphaned brokers).
    """

    def __init__(
        self,
        jars: Path,
        data_dir: Path,
        *,
        port: int | None = None,
        props: Mapping[str, str] | None = None,
        jvm_opts: Sequence[str] = DEFAULT_JVM_OPTS,
        log_level: str = "INFO",
        start_timeout: float = 90.0,
        stop_timeout: float = 30.0,
        java: str = "java",
        cds: bool = True,
    ) -> None:
        self.jars = Path(jars).resolve()
        self.data_dir = Path(data_dir).resolve()
        self._fixed_ports = port is not None
        self.port = port or 0
        self.controller_port = 0
        self.props = dict(props or {})
        self.jvm_opts = list(jvm_opts)
        self.server_jvm_opts: list[str] = []
        self.log_level = log_level
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.java = java
        archive = self.jars / CDS_ARCHIVE
        if cds and archive.is_file():
            self.jvm_opts.append(f"-XX:SharedArchiveFile={archive}")
        self.cluster_id = ""
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    @property
    def formatted(self) -> bool:
        return (self._logs_dir / "meta.properties").is_file()

    def __enter__(self) -> KafkaBroker:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> KafkaBroker:
        """Format (once), launch, wait for metadata; raises KafkaUnavailable with the log.

        A port that ``free_port`` picked can be taken before the JVM binds it (parallel
        test nodes): a new cluster then gets new ports and another try. A restart keeps
        its ports (its clients know them).
        """
        if self.process is not None:
            raise KafkaUnavailable("already started")
        if not jars_present(self.jars):
            raise KafkaUnavailable(f"Kafka jars missing in {self.jars} (make fetches them)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.start_timeout
        restart = self.formatted
        if restart and self._props_path.is_file():
            port, self.controller_port = self._ports_from_config()
            self.port = self.port or port
        for attempt in range(1, BIND_ATTEMPTS + 1):
            if not restart and not self._fixed_ports:
                self.port, self.controller_port = free_port(), free_port()
            elif not self.controller_port:
                self.controller_port = free_port()
            if port_open("127.0.0.1", self.port):
                raise KafkaUnavailable(f"port {self.port} is already in use")
            self._write_config()
            if restart:
                self.cluster_id = self._recorded_cluster_id()
            else:
                self._format(deadline)
            with self.log_path.open("ab") as out:  # the child keeps its own descriptor
                self.process = subprocess.Popen(
                    self._java_cmd("kafka.Kafka", str(self._props_path), server=True),
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True, cwd=self.data_dir)
            try:
                self._wait_ready(deadline)
                self._fixed_ports = True  # a restart comes back where its clients look
                return self
            except KafkaUnavailable:
                self.stop()
                retry = (not restart and not self._fixed_ports and attempt < BIND_ATTEMPTS
                         and "Address already in use" in self.log_tail())
                if not retry:
                    raise
                shutil.rmtree(self._logs_dir, ignore_errors=True)
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")

    def stop(self) -> int | None:
        """SIGTERM (Kafka shuts down cleanly), SIGKILL after ``stop_timeout``; idempotent.

        Returns the JVM's exit code (143 after a clean SIGTERM shutdown), None if not running.
        """
        proc, self.process = self.process, None
        if proc is None:
            return None
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
        return proc.returncode

    def kill(self) -> None:
        """SIGKILL, no shutdown (a crash, for fault tests)."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()

    def log_tail(self, lines: int = 30) -> str:
        try:
            with self.log_path.open(errors="replace") as log:
                return "".join(deque(log, maxlen=lines))
        except OSError:
            return ""

    # -- internals ---------------------------------------------------------------------

    @property
    def _logs_dir(self) -> Path:
        return self.data_dir / "kraft-logs"

    @property
    def _props_path(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def _log4j_path(self) -> Path:
        return self.data_dir / "log4j2.properties"

    def _java_cmd(self, main: str, *args: str, server: bool = False) -> list[str]:
        extra = self.server_jvm_opts if server else []
        # setpriv: the JVM gets SIGTERM when its parent dies, so a killed test run or
        # benchmark leaves no broker behind (a JVM does not notice on its own).
        guard = ["setpriv", "--pdeathsig", "TERM", "--"] if (
            server and shutil.which("setpriv")) else []
        return [*guard, self.java, *self.jvm_opts, *extra,
                f"-Dlog4j2.configurationFile={self._log4j_path}",
                "-cp", f"{self.jars}/*", main, *args]

    def _write_config(self) -> None:
        self._logs_dir.mkdir(parents=True, exist_ok=True)
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},"
                         f"CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self._logs_dir),
            **DEFAULT_PROPS,
            **self.props,
        }
        self._props_path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        self._log4j_path.write_text(
            # log4j's own hook would stop logging before Kafka's shutdown hook is done
            "shutdownHook = disable\nappender.out.type = Console\nappender.out.name = OUT\n"
            "appender.out.layout.type = PatternLayout\n"
            "appender.out.layout.pattern = [%d] %p %m (%c)%n\n"
            f"rootLogger.level = {self.log_level}\nrootLogger.appenderRef.out.ref = OUT\n"
            # the full config dump, ~2000 lines per start, adds nothing to server.properties
            "logger.cfg.name = org.apache.kafka.common.config\nlogger.cfg.level = WARN\n")

    def _ports_from_config(self) -> tuple[int, int]:
        """The ports of the last start (a restart keeps them)."""
        props = dict(line.split("=", 1) for line in self._props_path.read_text().splitlines()
                     if "=" in line)
        port = int(props["advertised.listeners"].rsplit(":", 1)[1])
        controller = int(props["controller.quorum.voters"].rsplit(":", 1)[1])
        return port, controller

    def _recorded_cluster_id(self) -> str:
        for line in (self._logs_dir / "meta.properties").read_text().splitlines():
            if line.startswith("cluster.id="):
                return line.split("=", 1)[1].strip()
        return ""

    def _format(self, deadline: float) -> None:
        """kafka-storage format with static voters (no --standalone needed on Kafka 4)."""
        self.cluster_id = new_cluster_id()
        cmd = self._java_cmd("kafka.tools.StorageTool", "format",
                             "-t", self.cluster_id, "-c", str(self._props_path))
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, cwd=self.data_dir,
                                 timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise KafkaUnavailable("kafka-storage format timed out") from None
        if out.returncode != 0:
            raise KafkaUnavailable(f"kafka-storage format failed ({out.returncode}): "
                                   + (out.stdout + out.stderr).strip()[-2000:])

    def _wait_ready(self, deadline: float) -> None:
        assert self.process is not None
        last = "no answer yet"
        while True:
            code = self.process.poll()
            if code is not None:
                raise KafkaUnavailable(f"Kafka exited with {code} during start; last lines "
                                       f"of {self.log_path}:\n{self.log_tail()}")
            try:
                if self.port in metadata_broker_ports("127.0.0.1", self.port, timeout=2.0):
                    return
                last = "metadata lists no broker on our port yet"
            except (OSError, ValueError, struct.error) as exc:
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                raise KafkaUnavailable(
                    f"Kafka not ready on {self.bootstrap} after {self.start_timeout:.0f}s "
                    f"({last}); last lines of {self.log_path}:\n{self.log_tail()}")
            time.sleep(0.1)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """The JVM leads its own process group (start_new_session), so pgid == pid."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


# -- command line ----------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    """``fetch``: make the jars ready (a missing Java or Maven is reported, not an error
    unless ``--strict``); ``run``: one broker in the foreground until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m quotacache.dev.kafka_broker",
                                     description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("fetch", help="fetch the jars with Maven into the cache")
    fetch.add_argument("--strict", action="store_true", help="exit 1 when Kafka cannot run")
    run = commands.add_parser("run", help="run a single-node Kafka until Ctrl-C")
    run.add_argument("--port", type=int, default=9092)
    run.add_argument("--data-dir", type=Path, default=Path("quotacache-kafka"),
                     help="kept between runs, like a real broker's (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.command == "fetch":
        began = time.monotonic()
        try:
            directory = ensure_jars()
        except KafkaUnavailable as exc:
            print(f"Kafka {KAFKA_VERSION} unavailable, tests on real Kafka will skip: {exc}")
            return 1 if args.strict else 0
        print(f"Kafka {KAFKA_VERSION} jars ready in {directory} "
              f"({time.monotonic() - began:.1f} s)")
        return 0
    broker = KafkaBroker(ensure_jars(), args.data_dir, port=args.port)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    began = time.monotonic()
    with broker:
        print(f"Kafka {KAFKA_VERSION} on {broker.bootstrap} (cluster {broker.cluster_id}, "
              f"pid {broker.pid}, data in {broker.data_dir}) ready in "
              f"{time.monotonic() - began:.1f} s; Ctrl-C stops it", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while broker.process is not None and broker.process.poll() is None:
                time.sleep(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
