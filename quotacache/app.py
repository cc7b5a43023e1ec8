"""Builds the Faust app of quotacache from settings: topics, tables, agents and views.

``build_app`` is the one way to get an app; ``quotacache worker`` calls it with the
settings from the config file. Consumer-group timings are short so a worker that leaves
is noticed soon (the embedded broker's first join of a group takes a fixed ~3 s whatever
they are: README, "The embedded broker"); exactly-once is never enabled (the embedded
broker has no transactions or idempotent producer), the idempotent producer only on real
Kafka (``broker.idempotence``: streams/real_kafka.py).
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import threading
import time
from typing import Any

import faust
import httpx

from quotacache import redact
from quotacache.failures import Failures
from quotacache.runtime import Clock, Runtime
from quotacache.settings import Settings
from quotacache.streams import livelock_check, quiet_logs
from quotacache.streams.real_kafka import configure_for_kafka
from quotacache.streams.topics import Topics
from quotacache.tables.cache import CacheTable
from quotacache.tables.control import ControlTables
from quotacache.tables.health import HealthTable
from quotacache.tables.inflight import InFlight
from quotacache.tables.manager import PromptTableManager
from quotacache.tables.ratelimit import RateLimiter
from quotacache.upstream.client import UpstreamClient
from quotacache.web import (
    control,
    dashboard,
    events,
    hit_socket,
    hits,
    metrics,
    openapi,
    reads,
    status,
)
from quotacache.web.guard import RequestLimiter, guard_middleware
from quotacache.web.schemas import MAX_BODY_BYTES

log = logging.getLogger(__name__)


#: The group session on the embedded broker. Tansu holds every JoinGroup in 1 s steps
#: until half the session has passed (``python -m bench.idle.join_probe``): 3 s with
#: Kafka's 6 s, 1 s with this, so a worker is ready 2 s sooner and a rebalance takes 1 s.
#: The price: a worker whose heartbeats (every 0.5 s) stop for 2 s is evicted by the next
#: member that calls in, as Kafka would after its 6 s. Kafka refuses sessions under 6 s.
EMBEDDED_SESSION = 2.0


class Worker(faust.Worker):
    """Faust's worker, whose stop has a deadline (``Settings.stop_timeout``).

    Faust's stop flushes the producer and commits before it ends; with the broker
    unreachable it waits for ever, so a supervisor's SIGTERM would never be answered.
    Past the deadline the process exits with STOP_TIMEOUT_EXIT: the records still unsent
    are lost either way, and the calls sent are journaled as they go
    (``tables/journal.py``). Its log handlers collapse the Kafka client's repeats
    (``streams/quiet_logs.py``)."""

    def __init__(self, *args: Any, stop_timeout: float, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.stop_timeout = stop_timeout
        self._deadline: threading.Timer | None = None

    async def stop(self) -> None:
        if self._deadline is None:
            self._deadline = threading.Timer(self.stop_timeout, self._stop_now)
            self._deadline.daemon = True
            self._deadline.start()
        await super().stop()

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        super().on_setup_root_logger(logger, level)
        quiet_logs.install(logger.handlers)

    def _stop_now(self) -> None:
        log.error("the stop did not finish in %.0f s (is the broker reachable?): exiting "
                  "without it", self.stop_timeout)
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(STOP_TIMEOUT_EXIT)


#: The exit status of a stop cut short by its deadline (EX_TEMPFAIL).
STOP_TIMEOUT_EXIT = 75


class App(faust.App):
    """Faust's app, counting its agents' crashes in ``failures``: Faust logs a crash and
    restarts the agent, and ``/health`` says so when they recur."""

    failures: Failures

    async def _on_agent_error(self, agent: Any, exc: BaseException) -> None:
        self.failures.record(f"agent {agent.name}", exc)
        await super()._on_agent_error(agent, exc)


def faust_app(settings: Settings, middlewares: list[Any] | None = None,
              failures: Failures | None = None) -> App:
    livelock_check.install()
    app = App(
        settings.app_id,
        broker=settings.broker.kafka_url(),
        store="rocksdb://",
        datadir=str(settings.data_dir),
        autodiscover=False,
        web_host=settings.web.host,
        web_bind=settings.web.host,
        web_port=settings.web.port,
        topic_partitions=settings.broker.partitions,
        topic_replication_factor=1,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        broker_rebalance_timeout=3.0,
        broker_session_timeout=EMBEDDED_SESSION if settings.broker.embedded else 6.0,
        broker_heartbeat_interval=0.5 if settings.broker.embedded else 1.0,
        broker_commit_every=100,
        broker_commit_interval=1.0,
        table_cleanup_interval=5.0,
        producer_linger_ms=10,
        key_serializer="json",
        value_serializer="raw",
        web="quotacache://",  # aiohttp, with hits answered at the socket (web/hit_socket.py)
        web_cors_options=None,
        TableManager=PromptTableManager,  # every table exists before the worker starts
        Worker=functools.partial(Worker, stop_timeout=settings.stop_timeout),
        web_application_options={"middlewares": middlewares or [],
                                 "client_max_size": MAX_BODY_BYTES},
    )
    app.failures = failures or Failures()
    return app


def build_app(settings: Settings, *, clock: Clock = time.time,
              transports: dict[str, httpx.AsyncBaseTransport] | None = None) -> Runtime:
    """Create the app and wire every agent, timer and view to one Runtime."""
    from quotacache.agents import fetch, materialize, refresh, scheduler, sweeper

    redact.install([*(cfg.auth.secret() for cfg in settings.services.values() if cfg.auth),
                    settings.web.token_value()])
    limiter = RequestLimiter(settings.web.max_requests_per_second, settings.web.request_burst)
    # The guard asks the runtime built below; it runs only once requests arrive.
    failures = Failures(clock)
    app = faust_app(settings, [guard_middleware(limiter, settings.web,
                                                lambda: status.starting(rt)),
                               hits.hit_middleware(lambda: rt)], failures)
    configure_for_kafka(app, settings)  # idempotent producer etc.: streams/real_kafka.py
    transports = transports or {}
    rt = Runtime(
        settings=settings,
        app=app,
        topics=Topics(app, settings),
        cache=CacheTable(app, settings.broker.partitions),
        limiter=RateLimiter(app, settings),
        upstreams={name: UpstreamClient(name, cfg, transports.get(name))
                   for name, cfg in settings.services.items()},
        control=ControlTables(app),
        health=HealthTable(app, settings.broker.partitions),
        inflight=InFlight(settings.cache.inflight_timeout),
        clock=clock,
        failures=failures,
    )
    app.web.answerer = hit_socket.Answers(  # type: ignore[attr-defined]
        lambda key, admit: hits.take(rt, key, admit),
        lambda address: status.starting(rt) is None and limiter.take(address) <= 0)
    for module in (fetch, refresh, materialize, sweeper, scheduler,
                   reads, status, control, events, dashboard, metrics, openapi):
        module.register(rt)

    @app.on_partitions_assigned.connect
    async def count_other_workers_calls(app: faust.App, assigned: object,
                                        **kwargs: object) -> None:
        # A takeover: the previous owner's last calls may not be in the changelog yet,
        # but they are in its journal (same journal_dir on one machine).
        rt.limiter.reload_journal(rt.clock())

    @app.on_before_shutdown.connect
    async def cancel_background_tasks(app: faust.App, **kwargs: object) -> None:
        rt.stopping.set()  # the web server's stop waits for every open answer: streams
        rt.waiters.wake_all()  # and waiting readers are answered now
        await rt.tasks.cancel_all()

    return rt
