"""``quotacache worker``: prepare the broker and data dir, then hand over to Faust's worker.

Before Faust starts: start the embedded broker if it is configured and nobody answers on
its port (and stop it on exit), install the Tansu compatibility layer, discard a data dir
left from another broker, and create every topic with the configured partition count.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import sys
from collections.abc import Sequence

from .app import build_app
from .broker import (
    EmbeddedBroker,
    cluster_id,
    discard_stale_data_dir,
    ensure_topics,
    install_tansu_compat,
    port_open,
)
from .settings import Settings

log = logging.getLogger(__name__)


async def prepare_broker(settings: Settings, topic_names: Sequence[str]) -> str:
    """Cluster id of the broker, after its topics exist; wipes a stale data dir."""
    bootstrap = settings.broker.bootstrap_servers()
    current = await cluster_id(bootstrap)
    discard_stale_data_dir(settings.data_dir, current)
    await ensure_topics(bootstrap, topic_names, settings.broker.partitions)
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


def run(settings: Settings, faust_args: Sequence[str]) -> int:
    broker = start_embedded_if_needed(settings)
    if settings.broker.embedded:
        install_tansu_compat(settings.broker.bootstrap_servers())
    runtime = build_app(settings)
    asyncio.run(prepare_broker(settings, runtime.topics.names()))
    sys.argv = ["quotacache", "worker", *with_web_defaults(list(faust_args), settings)]
    try:
        runtime.app.main()
    finally:
        if broker is not None:
            broker.stop()
    return 0
