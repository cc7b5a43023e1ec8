"""Where the jars of a real Apache Kafka come from: Maven fetches what
``kafka-jars/pom.xml`` names from Maven Central into a cache keyed by the pom and the
Java version. Where Java 17+, Maven or Maven Central is missing, ``KafkaUnavailable``
says so in one line. ``kafka_broker.ensure_jars`` uses this once (``make kafka``), then
builds the class-data archive a fast JVM start maps, with a broker."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

from quotacache.errors import BrokerError

KAFKA_VERSION = "4.4.0"
POM = Path(__file__).with_name("kafka-jars") / "pom.xml"
CDS_ARCHIVE = "kafka.jsa"  # in the jars dir; the classpath wildcard only takes *.jar


class KafkaUnavailable(BrokerError):
    """Kafka cannot run here (no Java, no jars, no Maven Central) or did not start."""


def cache_root() -> Path:
    """``QUOTACACHE_KAFKA_CACHE``, else ``.cache/kafka`` of the checkout, else the user's."""
    configured = os.environ.get("QUOTACACHE_KAFKA_CACHE")
    if configured:
        return Path(configured).resolve()
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "Makefile").is_file():
        return checkout / ".cache" / "kafka"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "quotacache" / "kafka"


def java_version(java: str = "java") -> str:
    """The first line of ``java -version``; raises KafkaUnavailable without Java 17+."""
    binary = shutil.which(java)
    if binary is None:
        raise KafkaUnavailable("java not found on PATH (Kafka needs Java 17+)")
    try:
        out = subprocess.run([binary, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        raise KafkaUnavailable(f"java -version failed: {exc}") from None
    first = (out.stderr or out.stdout).strip().splitlines()[:1]
    major = _java_major(first[0] if first else "")
    if major is None or major < 17:
        raise KafkaUnavailable(f"Kafka {KAFKA_VERSION} needs Java 17+, found: {first}")
    return first[0]


def _java_major(version_text: str) -> int | None:
    """17 from 'openjdk version "17.0.15"', 8 from '"1.8.0_392"'."""
    try:
        version = version_text.split('"')[1]
    except IndexError:
        return None
    parts = version.split(".")
    head = parts[1] if parts[0] == "1" and len(parts) > 1 else parts[0]
    digits = "".join(c for c in head if c.isdigit())
    return int(digits) if digits else None


def jars_dir(java: str = "java", pom: Path = POM) -> Path:
    """The cache folder of this pom's jars for this Java: a new pom or JDK gets a new one
    (the class-data archive in it only fits the JDK that wrote it)."""
    key = hashlib.sha256(pom.read_bytes() + java_version(java).encode()).hexdigest()[:16]
    return cache_root() / key


def jars_present(directory: Path) -> bool:
    return (directory / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file()


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """One fetch at a time per cache (parallel test nodes all ask for the jars)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def fetch_jars(directory: Path, *, pom: Path = POM, mvn_args: Sequence[str] = (),
               timeout: float = 900.0) -> None:
    """Copy Kafka and its runtime jars into ``directory`` with Maven.

    Into a temporary sibling first, then renamed: an interrupted fetch never leaves a
    half-filled folder that ``jars_present`` would accept.
    """
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaUnavailable("mvn not found on PATH: cannot fetch the Kafka jars")
    directory = directory.resolve()
    tmp = directory.with_name(f"{directory.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
           f"-DoutputDirectory={tmp}", *mvn_args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        shutil.rmtree(tmp, ignore_errors=True)
        raise KafkaUnavailable(f"mvn did not fetch the Kafka jars in {timeout:.0f}s "
                               "(is Maven Central reachable?)") from None
    if proc.returncode != 0 or not jars_present(tmp):
        shutil.rmtree(tmp, ignore_errors=True)
        tail = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
        raise KafkaUnavailable(f"mvn could not fetch the Kafka jars ({proc.returncode}): "
                               + " | ".join(tail[-3:])[:400])
    shutil.rmtree(directory, ignore_errors=True)
    tmp.rename(directory)
