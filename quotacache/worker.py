"""``quotacache worker``: prepare the broker and data dir, then hand over to Faust's worker.

Before Faust starts: start the embedded broker if it is configured and nobody answers on
its port (and stop it on exit; it dies with the worker if the worker is killed), install
the Tansu compatibility layer, discard a data dir left from another broker, and create
every topic with the configured partition count (on the embedded broker also the tables'
changelogs, re-creating any that hold orphaned records). ``--help`` does none of this.
While it runs: restart itself when the broker comes back as another (empty) cluster, at
the first connection to it on the embedded broker, before anything is sent there.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

from quotacache.app import build_app
from quotacache.dev import fetch_wait, rotation
from quotacache.dev.broker import (
    EmbeddedBroker,
    discard_stale_data_dir,
    ensure_topics,
    guard_cluster,
    holds_state,
    install_tansu_compat,
    port_open,
)
from quotacache.dev.cluster import ClusterIds, cluster_id
from quotacache.dev.generations import broker_generation, record_generation, recorded_generation
from quotacache.dev.persisted_offsets import Stores, stores_ahead
from quotacache.runtime import Runtime
from quotacache.settings import Settings

log = logging.getLogger(__name__)


async def prepare_broker(settings: Settings, topics: Mapping[str, int],
                         topic_configs: Mapping[str, Mapping[str, str]] | None = None,
                         stores: Stores | None = None) -> str:
    """Cluster id of the broker, after its topics (name -> partitions) exist, created with
    their ``topic_configs`` (retention); wipes a stale data dir. On the embedded broker,
    topics with orphaned records or another partition count are re-created
    (dev/broker.py), and then the data dir is stale too; so is one whose ``stores``
    persisted offsets past their changelogs' ends (dev/persisted_offsets.py), or one
    written at another generation of the topics (dev/generations.py)."""
    bootstrap = settings.broker.bootstrap_servers()
    current = await cluster_id(bootstrap)
    # A rotation cut short, or one this data dir missed, leaves persisted offsets that
    # may not match the changelogs.
    generation = await broker_generation(bootstrap, settings.topic_prefix)
    written = recorded_generation(settings.data_dir)
    if missed := written != generation and holds_state(settings.data_dir):
        log.warning("the topics are at generation %d, the data dir was written at %d",
                    generation, written)
    discard_stale_data_dir(settings.data_dir, current,
                           force=missed or rotation.discard_if_interrupted(settings.data_dir))
    repaired = await ensure_topics(bootstrap, topics, repair=settings.broker.embedded,
                                   configs=topic_configs)
    if repaired:
        discard_stale_data_dir(settings.data_dir, current, force=True)
    elif stores and (stale := await stores_ahead(bootstrap, stores)):
        log.warning("the tables' changelogs were re-created since this data dir last "
                    "read them (%s)", "; ".join(stale))
        discard_stale_data_dir(settings.data_dir, current, force=True)
    record_generation(settings.data_dir, generation)
    return current


def topics_to_prepare(runtime: Runtime) -> dict[str, int]:
    """Our topics, and on the embedded broker the tables' changelogs as well: created by
    us before Faust declares them, so they are checked for orphaned records like ours (on
    real Kafka Faust creates them itself, with their compaction settings)."""
    settings = runtime.settings
    topics = dict.fromkeys(runtime.topics.names(), settings.broker.partitions)
    if settings.broker.embedded:
        for table in runtime.app.tables.values():
            changelog = table.changelog_topic
            topics[changelog.get_topic_name()] = (changelog.partitions
                                                  or settings.broker.partitions)
    return topics


def changelog_stores(runtime: Runtime) -> dict[Path, tuple[str, int]]:
    """Each table partition's RocksDB path, with its changelog topic and partition."""
    partitions = runtime.settings.broker.partitions
    return {Path(runtime.app.conf.tabledir) / f"{table.name}-{p}.db":
            (table.changelog_topic.get_topic_name(), p)
            for table in runtime.app.tables.values()
            for p in range(table.changelog_topic.partitions or partitions)}


def wants_help(faust_args: Sequence[str]) -> bool:
    """``--help`` only prints: no broker, no data dir, no topics (``-h`` is --web-host)."""
    return any(arg == "--help" for arg in faust_args)


def start_embedded_if_needed(settings: Settings) -> EmbeddedBroker | None:
    if not settings.broker.embedded:
        return None
    port = settings.broker.embedded_port
    if port_open("127.0.0.1", port):
        return None
    broker = EmbeddedBroker(port).start()
    atexit.register(broker.stop)
    return broker


def with_web_defaults(argv: list[str], settings: Settings) -> list[str]:
    """Faust's worker needs --web-host/--web-port to set canonical_url for table routing."""
    argv = list(argv)
    if not any(a in ("--web-port", "-p") or a.startswith("--web-port=") for a in argv):
        argv += ["--web-port", str(settings.web.port)]
    if not any(a in ("--web-host", "-h") or a.startswith("--web-host=") for a in argv):
        argv += ["--web-host", settings.web.host]
    if not any(a in ("--web-bind", "-b") or a.startswith("--web-bind=") for a in argv):
        argv += ["--web-bind", settings.web.host]
    return argv


#: How often a worker asks the broker for its cluster id.
BROKER_WATCH_INTERVAL = 5.0


def restart_process() -> None:
    """Replace this process by a fresh start of the same command (same PID)."""
    logging.shutdown()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def watch_broker(runtime: Runtime, started_with: str,
                 restart: Callable[[], None] = restart_process) -> None:
    """Restart the worker when the broker turns out to be another cluster.

    A memory-only broker (the embedded one) that restarts comes back empty with a new
    cluster id: the worker's tables, offsets and consumer group no longer match anything.
    Its state cannot be repaired in place, so the worker starts over: the new start sees
    the new cluster id, discards the stale data dir, creates the topics and rebuilds from
    what the new broker has. Real Kafka keeps its cluster id across restarts, so there
    this only fires if the cluster really was replaced.
    """
    ids = ClusterIds(runtime.settings.broker.bootstrap_servers(), timeout=3.0)

    @runtime.app.timer(BROKER_WATCH_INTERVAL, name="broker-watch")
    async def broker_watch() -> None:
        if await other_cluster(ids.get, started_with):  # down: look again later
            log.warning("the broker is another cluster now: restarting the worker to "
                        "rebuild its state")
            restart()

    @runtime.app.on_before_shutdown.connect
    async def close_watch(app: object, **kwargs: object) -> None:
        await ids.close()


def describe_services(settings: Settings) -> str:
    """One line naming every service and where it comes from, for the start-up log."""
    from quotacache.services import PROFILES

    origin = {name: profile for profile in settings.profiles for name in PROFILES[profile]}
    return "services: " + ", ".join(
        f"{name} ({len(cfg.endpoints)} endpoints, "
        f"{'profile ' + origin[name] if name in origin else 'configured'})"
        for name, cfg in settings.services.items())


def restart_for(cluster: str) -> None:
    log.warning("the broker is another cluster now (%s): restarting the worker to rebuild "
                "its state", cluster)
    restart_process()


def use_event_loop(name: str) -> None:
    """Every loop this process creates from now on is ``name``'s (``event_loop``)."""
    if name != "uvloop":
        return
    try:
        import uvloop
    except ImportError:
        log.warning("event_loop = \"uvloop\" but uvloop is not installed: using asyncio's")
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def run(settings: Settings, faust_args: Sequence[str]) -> int:
    if wants_help(faust_args):
        sys.argv = ["quotacache", "worker", *faust_args]
        build_app(settings).app.main()
        return 0
    log.warning(describe_services(settings))
    use_event_loop(settings.event_loop)
    broker = start_embedded_if_needed(settings)
    if settings.broker.embedded:
        install_tansu_compat(settings.broker.bootstrap_servers())
    runtime = build_app(settings)
    if settings.broker.embedded:
        fetch_wait.install(settings.broker, runtime.app)
    runtime.limiter.open_journal(runtime.clock())
    topics = topics_to_prepare(runtime)
    started_with = asyncio.run(prepare_broker(settings, topics, runtime.topics.configs(),
                                              changelog_stores(runtime)))
    if settings.broker.embedded:  # bounded broker memory (dev/rotation.py)
        rotation.install(runtime, topics, runtime.topics.configs())
    if settings.broker.embedded:
        guard_cluster(started_with, restart_for)
    if broker is None:  # a broker we started ourselves cannot be restarted under us
        watch_broker(runtime, started_with)
    sys.argv = ["quotacache", "worker", *with_web_defaults(list(faust_args), settings)]
    try:
        runtime.app.main()
    except SystemExit as exit_:
        # Faust's recovery crashes (ConsistencyError) when the broker came back empty
        # before the watch saw it: that too is a restart, not an end. A clean stop
        # (exit code 0, e.g. SIGTERM) is always an end.
        crashed = exit_.code not in (0, None)
        if crashed and broker is None and asyncio.run(other_cluster(
                lambda: cluster_id(settings.broker.bootstrap_servers(), timeout=3.0),
                started_with)):
            log.warning("the broker is another cluster now: restarting the worker")
            restart_process()
        raise
    finally:
        if broker is not None:
            broker.stop()
    return 0


async def other_cluster(ask: Callable[[], Awaitable[str]], started_with: str) -> bool:
    """Is the broker another cluster than ``started_with``? No when it cannot be asked."""
    try:
        current = await ask()
    except Exception:
        return False
    return bool(current) and current != started_with
