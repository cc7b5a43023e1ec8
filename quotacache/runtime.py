"""The running parts of one quotacache app, shared by its agents and views.

Built once by ``quotacache.app.build_app``; agents and views receive it instead of
importing globals, so tests and the demo can build apps with their own settings.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import faust

from quotacache.errors import InvalidSymbol, UnknownTarget
from quotacache.failures import Failures
from quotacache.policy.demand import ReadRates
from quotacache.policy.queue import Backlog
from quotacache.policy.strategy import budget_use
from quotacache.settings import Settings
from quotacache.streams.records import BadMessage, resolve_target
from quotacache.streams.topics import Topics
from quotacache.tables.cache import CacheTable
from quotacache.tables.control import ControlTables
from quotacache.tables.health import HealthTable
from quotacache.tables.inflight import InFlight
from quotacache.tables.ratelimit import RateLimiter
from quotacache.tables.stats import Stats
from quotacache.tables.waiters import Waiters
from quotacache.tasks import BackgroundTasks
from quotacache.upstream import UpstreamClient

Clock = Callable[[], float]


@dataclass
class Runtime:
    settings: Settings
    app: faust.App
    topics: Topics
    cache: CacheTable
    limiter: RateLimiter
    upstreams: dict[str, UpstreamClient]
    control: ControlTables
    health: HealthTable
    inflight: InFlight
    stats: Stats = field(default_factory=Stats)
    clock: Clock = time.time
    waiters: Waiters = field(default_factory=Waiters)
    #: Fetches queued or under way for the services this worker owns (the fetch agent's).
    backlog: Backlog = field(default_factory=Backlog)
    #: Read rates of the keys this worker owns (every read of a key is answered here).
    demand: ReadRates = field(default_factory=ReadRates)
    tasks: BackgroundTasks = field(default_factory=BackgroundTasks)
    #: The agents' crashes and caught errors (``/health`` says when they recur).
    failures: Failures = field(default_factory=Failures)
    #: Set once partitions were assigned and tables recovered (the start-up gate opens).
    has_been_ready: bool = False
    #: Set when the worker begins to stop: open streams end (the web server's stop waits
    #: for every open answer).
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def resolve(self, service: str, endpoint: str, symbol: str) -> tuple[str, str]:
        """Check a (service, endpoint, symbol) against the config; return (symbol, cache key).

        Endpoints that take no symbol are cached under ``*`` whatever symbol is asked.
        Raises UnknownTarget or InvalidSymbol with a message naming the bad part.
        """
        return resolve_target(self.settings, service, endpoint, symbol)

    def owner_url(self, service: str) -> str | None:
        """The web URL of the worker that owns ``service`` (None before assignment)."""
        try:
            return str(self.app.router.key_store(self.health.name, service)).rstrip("/")
        except (KeyError, TypeError):  # TypeError: aiokafka before the first metadata
            return None

    def owns(self, service: str) -> bool:
        return self.owner_url(service) == str(self.app.conf.canonical_url).rstrip("/")

    def budget_use(self, service: str, now: float) -> float:
        """How much of its budget ``service`` uses now (0..1), by our counts or its own."""
        return budget_use(self.limiter.usage(service, now), service,
                          self.health.get(service).hinted_use(now))

    async def dead_letter(self, event: faust.types.EventT, reason: str) -> None:
        """Dead-letter the event being processed (with the reason) and count it."""
        message = event.message
        self.stats.count("dead_letters",
                         "topic/" + message.topic.removeprefix(self.settings.topic_prefix))
        await self.topics.send_dead_letter(reason, event.value, topic=message.topic,
                                           partition=message.partition, offset=message.offset)

    def resolve_message(self, service: str, endpoint: str, symbol: str) -> tuple[str, str]:
        """``resolve`` for topic messages: errors become BadMessage (dead-letter reasons)."""
        try:
            return self.resolve(service, endpoint, symbol)
        except (UnknownTarget, InvalidSymbol) as exc:
            raise BadMessage(str(exc)) from None
