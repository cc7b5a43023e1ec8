"""The topics of quotacache, named from the configured prefix, all with explicit partitions.

Public: ``refresh``, ``volatility``, ``data.<service>.<endpoint>``, ``dead-letter``.
Internal: ``internal.requests`` (refreshes keyed by cache key, so one partition owns a
key's freshness check and single-flight), ``internal.fetch`` (admitted fetches keyed by
service, so one partition owns a service's rate limits) and ``internal.outcomes``
(fetches that ended without data). Every topic has the same partition count, so Faust's
assignor gives partition P of all of them, and of every table, to the same worker.

Keys are JSON on every topic we produce (``table_route`` hashes the JSON form); values
are raw bytes parsed by ``streams.records`` so bad messages can be dead-lettered.

Every send goes through ``Topics.send``, which follows it to the broker's answer
(``SendHealth``): ``/health`` is not ready while sends keep failing or hang. A write of
the HTTP API (``publish``) waits for that answer: it is refused, saying why, rather than
accepted into a producer that cannot deliver.

Each topic has a time retention (``broker.data_retention`` for the data topics and the
dead letters, ``broker.request_retention`` for the rest), so a real Kafka does not keep
them forever; ``configs`` gives the topic configs to create them with.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import faust

from quotacache.errors import NotDelivered
from quotacache.settings import Settings
from quotacache.streams.records import DeadLetter, Record, preview

log = logging.getLogger(__name__)

#: Seconds an API write waits for the broker to confirm what it published.
PUBLISH_TIMEOUT = 5.0


def failure(exc: BaseException) -> str:
    """A failed send, as /health and a refused write name it."""
    return f"{type(exc).__name__}: {exc}"[:200]


class SendHealth:
    """How this worker's sends fare at the broker, per topic: what ``/health`` reads.

    A topic is failing after ``FAILING_AFTER`` failed sends in a row (one delivered send
    clears it; forgotten ``FORGET_AFTER`` s after the last failure when nothing is sent
    any more), or ``FAILING_AFTER`` failures within ``WINDOW`` s (one partition of a topic
    can fail while the others deliver). A send that waits longer than ``STALL_AFTER`` s
    for the broker's answer (the broker is down: the producer retries for many minutes)
    counts as failing too.
    """

    FAILING_AFTER = 3
    WINDOW = 10.0
    FORGET_AFTER = 60.0
    STALL_AFTER = 15.0

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        #: Failed sends in a row per topic, and the times of the last few failures.
        self.consecutive: dict[str, int] = {}
        self.recent: dict[str, deque[float]] = {}
        self.last_error: dict[str, str] = {}
        self.delivered = 0
        self.failed = 0
        #: Sends not answered yet: sequence number -> (topic, started), oldest first.
        self.pending: dict[int, tuple[str, float]] = {}
        self._numbers = itertools.count()

    def started(self, topic: str) -> int:
        number = next(self._numbers)
        self.pending[number] = (topic, self.clock())
        return number

    def ended(self, number: int, exc: BaseException | None) -> None:
        entry = self.pending.pop(number, None)
        if entry is None:
            return
        topic = entry[0]
        if exc is None:
            self.delivered += 1
            self.consecutive[topic] = 0
            return
        self.failed += 1
        self.consecutive[topic] = self.consecutive.get(topic, 0) + 1
        self.recent.setdefault(topic, deque(maxlen=self.FAILING_AFTER)).append(self.clock())
        self.last_error[topic] = failure(exc)

    def dropped(self, number: int) -> None:
        """The send was cancelled (shutdown): neither delivered nor failed."""
        self.pending.pop(number, None)

    def problem(self) -> str | None:
        """Why sends are not working now, or None when they are."""
        now = self.clock()
        for topic, count in self.consecutive.items():
            recent = self.recent.get(topic) or ()
            in_a_row = count >= self.FAILING_AFTER and now - recent[-1] < self.FORGET_AFTER
            burst = (len(recent) == self.FAILING_AFTER and now - recent[0] < self.WINDOW)
            if in_a_row or burst:
                what = f"{count} in a row" if in_a_row else (
                    f"{self.FAILING_AFTER} in {self.WINDOW:g} s")
                return f"sends to {topic} failing ({what}): {self.last_error[topic]}"
        if self.pending:
            topic, started = next(iter(self.pending.values()))
            if now - started > self.STALL_AFTER:
                return (f"sends to {topic} unanswered for {now - started:.0f} s "
                        f"({len(self.pending)} waiting)")
        return None

    def snapshot(self) -> dict[str, Any]:
        return {"delivered": self.delivered, "failed": self.failed,
                "waiting": len(self.pending),
                "failing_in_a_row": {t: n for t, n in self.consecutive.items() if n}}


class Topics:
    """Every topic of one app, created from settings."""

    def __init__(self, app: faust.App, settings: Settings):
        self.app = app
        self.prefix = settings.topic_prefix
        self.health = SendHealth()
        partitions = settings.broker.partitions
        requests, data = settings.broker.request_retention, settings.broker.data_retention
        self._retention: dict[str, float] = {}
        #: Sends held in memory while the topics are re-created (``hold``), in order.
        self._held: list[tuple[faust.TopicT, str, bytes]] | None = None

        def topic(name: str, retention: float, key_serializer: str = "json") -> faust.TopicT:
            self._retention[self.prefix + name] = retention
            return app.topic(self.prefix + name, partitions=partitions, internal=True,
                             key_serializer=key_serializer, value_serializer="raw",
                             replicas=1, retention=retention)

        # Producers may key refresh requests any way (or not at all): read the key raw.
        self.refresh = topic("refresh", requests, key_serializer="raw")
        self.volatility = topic("volatility", requests, key_serializer="raw")
        self.dead_letter = topic("dead-letter", data)
        self.requests = topic("internal.requests", requests)
        self.fetch = topic("internal.fetch", requests)
        self.outcomes = topic("internal.outcomes", requests)
        self.data: dict[tuple[str, str], faust.TopicT] = {
            (service, endpoint): topic(data_topic_name("", service, endpoint), data)
            for service, config in settings.services.items()
            for endpoint in config.endpoints
        }

    def names(self) -> list[str]:
        return [t.get_topic_name() for t in self.all()]

    def configs(self) -> dict[str, dict[str, str]]:
        """Topic configs to create each topic with (Kafka's names and string values)."""
        return {name: {"retention.ms": str(round(seconds * 1000))}
                for name, seconds in self._retention.items()}

    def raw(self, *topics: faust.TopicT) -> faust.TopicT:
        """One channel over ``topics`` that gives keys and values as bytes: the agent
        validates each message itself and dead-letters what does not parse."""
        return self.app.topic(*(t.get_topic_name() for t in topics),
                              key_serializer="raw", value_serializer="raw")

    def all(self) -> list[faust.TopicT]:
        return [self.refresh, self.volatility, self.dead_letter, self.requests, self.fetch,
                self.outcomes, *self.data.values()]

    async def send_dead_letter(self, reason: str, payload: Any, *, topic: str,
                               partition: int | None = None, offset: int | None = None) -> None:
        """Record a message that could not be processed; never raises."""
        letter = DeadLetter(topic=topic, partition=partition, offset=offset, reason=reason,
                            payload=preview(payload), at=time.time())
        log.warning("dead-letter from %s: %s", topic, reason)
        try:
            await self._send(self.dead_letter, topic, letter.to_json())
        except Exception:  # a dead letter must never take an agent down
            log.exception("could not publish a dead-letter record")

    async def send(self, topic: faust.TopicT, key: str, record: Record) -> None:
        """Hand ``record`` to the producer; its delivery (or failure) is followed in
        ``health``. Raises only if the producer refuses it at once."""
        await self._send(topic, key, record.to_json())

    async def publish(self, topic: faust.TopicT, records: Mapping[str, Record],
                      timeout: float = PUBLISH_TIMEOUT) -> None:
        """Send ``records`` (key -> record) and return once the broker has them all, so an
        API that answers "published" has published. Raises NotDelivered saying why: the
        sends are failing already, the producer refused one, one failed, or the broker did
        not confirm them all within ``timeout`` (sending included). A record not confirmed
        in time may still be delivered later. Sends held for a rotation go out in order
        once it ends: held counts as published."""
        problem = self.health.problem()
        if problem:
            raise NotDelivered(problem)
        pending: list[asyncio.Future] = []
        try:
            async with asyncio.timeout(timeout):  # a full producer buffer blocks a send
                for key, record in records.items():
                    delivery = await self._send(topic, key, record.to_json())
                    if isinstance(delivery, asyncio.Future):
                        pending.append(delivery)
                if pending:
                    await asyncio.wait(pending)
        except TimeoutError:
            confirmed = sum(1 for d in pending if d.done())
            raise NotDelivered(f"the broker confirmed {confirmed} of {len(records)} records "
                               f"in {timeout:g} s") from None
        except Exception as exc:  # the producer refused the send at once
            raise NotDelivered(failure(exc)) from None
        for done in pending:
            if done.cancelled():
                raise NotDelivered("the send was cancelled (the worker is stopping)")
            if (exc := done.exception()) is not None:
                raise NotDelivered(failure(exc))

    async def confirm_sent(self, timeout: float = PUBLISH_TIMEOUT) -> None:
        """Return once the broker has every record handed to the producer so far, the
        tables' changelog records included (a table write answered as saved is saved).
        Raises NotDelivered when the broker does not confirm them within ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                await self.app.producer.flush()
        except TimeoutError:
            raise NotDelivered(f"the broker did not confirm the change in {timeout:g} s"
                               ) from None

    def hold(self) -> None:
        """Keep every send in memory from now on, in order, until ``release``: the
        topics are about to be deleted and created again (dev/rotation.py)."""
        if self._held is None:
            self._held = []

    @property
    def holding(self) -> bool:
        return self._held is not None

    async def release(self) -> int:
        """Send what was held, in order, then send directly again; how many were held."""
        sent = 0
        while self._held:
            batch, self._held = self._held, []
            for topic, key, value in batch:
                try:
                    await self._send_now(topic, key, value)
                except Exception:  # counted in ``health``; the rest must still go
                    log.exception("a held send to %s failed", topic.get_topic_name())
            sent += len(batch)
        self._held = None  # no await since the last check: nothing is left behind
        return sent

    async def _send(self, topic: faust.TopicT, key: str, value: bytes) -> Any:
        """The delivery future of the send (None while sends are held)."""
        if self._held is not None:
            self._held.append((topic, key, value))
            return None
        return await self._send_now(topic, key, value)

    async def _send_now(self, topic: faust.TopicT, key: str, value: bytes) -> Any:
        number = self.health.started(topic.get_topic_name())
        try:
            delivery = await topic.send(key=key, value=value)
        except asyncio.CancelledError:
            self.health.dropped(number)
            raise
        except Exception as exc:
            self.health.ended(number, exc)
            raise
        if isinstance(delivery, asyncio.Future):
            delivery.add_done_callback(lambda done: self._delivered(number, done))
        else:  # not a future (a test double): nothing more to learn
            self.health.ended(number, None)
        return delivery

    def _delivered(self, number: int, done: asyncio.Future) -> None:
        if done.cancelled():
            self.health.dropped(number)
        else:
            self.health.ended(number, done.exception())


def data_topic_name(prefix: str, service: str, endpoint: str) -> str:
    return f"{prefix}data.{service}.{endpoint}"
