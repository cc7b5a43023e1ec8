"""``quotacache worker``: prepare the broker and data dir, then hand over to Faust's worker.

Before Faust starts: start the embedded broker if it is configured and nobody answers on
its port (and stop it on exit), install the Tansu compatibility layer, discard a data dir
left from another broker, and create every topic with the configured partition count.
While it runs: restart itself when the broker comes back as another (empty) cluster.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence

from quotacache.app import build_app
from quotacache.dev.broker import (
    EmbeddedBroker,
    cluster_id,
    discard_stale_data_dir,
    ensure_topics,
    install_tansu_compat,
    port_open,
)
from quotacache.runtime import Runtime
from quotacache.settings import Settings

log = logging.getLogger(__name__)


async def prepare_broker(settings: Settings, topic_names: Sequence[str],
                         topic_configs: Mapping[str, Mapping[str, str]] | None = None) -> str:
    """Cluster id of the broker, after its topics exist; wipes a stale data dir."""
    bootstrap = settings.broker.bootstrap_servers()
    current = await cluster_id(bootstrap)
    discard_stale_data_dir(settings.data_dir, current)
    await ensure_topics(bootstrap, topic_names, settings.broker.partitions, topic_configs)
    return current


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

    @runtime.app.timer(BROKER_WATCH_INTERVAL, name="broker-watch")
    async def broker_watch() -> None:
        if await other_cluster(runtime.settings, started_with):  # down: look again later
            log.warning("the broker is another cluster now: restarting the worker to "
                        "rebuild its state")
            restart()


def run(settings: Settings, faust_args: Sequence[str]) -> int:
    broker = start_embedded_if_needed(settings)
    if settings.broker.embedded:
        install_tansu_compat(settings.broker.bootstrap_servers())
    runtime = build_app(settings)
    runtime.limiter.open_journal(runtime.clock())
    started_with = asyncio.run(prepare_broker(settings, runtime.topics.names(),
                                              runtime.topics.configs()))
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
        if crashed and broker is None and asyncio.run(other_cluster(settings, started_with)):
            log.warning("the broker is another cluster now: restarting the worker")
            restart_process()
        raise
    finally:
        if broker is not None:
            broker.stop()
    return 0


async def other_cluster(settings: Settings, started_with: str) -> bool:
    try:
        current = await cluster_id(settings.broker.bootstrap_servers(), timeout=3.0)
    except Exception:
        return False
    return bool(current) and current != started_with
