"""The topics of quotacache, named from the configured prefix, all with explicit partitions.

Public: ``refresh``, ``volatility``, ``data.<service>.<endpoint>``, ``dead-letter``.
Internal: ``internal.requests`` (refreshes keyed by cache key, so one partition owns a
key's freshness check and single-flight), ``internal.fetch`` (admitted fetches keyed by
service, so one partition owns a service's rate limits) and ``internal.outcomes``
(fetches that ended without data). Every topic has the same partition count, so Faust's
assignor gives partition P of all of them, and of every table, to the same worker.

Keys are JSON on every topic we produce (``table_route`` hashes the JSON form); values
are raw bytes parsed by ``streams.records`` so bad messages can be dead-lettered.

Each topic has a time retention (``broker.data_retention`` for the data topics and the
dead letters, ``broker.request_retention`` for the rest), so a real Kafka does not keep
them forever; ``configs`` gives the topic configs to create them with.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import faust

from quotacache.settings import Settings
from quotacache.streams.records import DeadLetter, Record, preview

log = logging.getLogger(__name__)


class Topics:
    """Every topic of one app, created from settings."""

    def __init__(self, app: faust.App, settings: Settings):
        self.app = app
        self.prefix = settings.topic_prefix
        partitions = settings.broker.partitions
        requests, data = settings.broker.request_retention, settings.broker.data_retention
        self._retention: dict[str, float] = {}

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
            await self.dead_letter.send(key=topic, value=letter.to_json())
        except Exception:  # a dead letter must never take an agent down
            log.exception("could not publish a dead-letter record")

    async def send(self, topic: faust.TopicT, key: str, record: Record) -> None:
        await topic.send(key=key, value=record.to_json())


def data_topic_name(prefix: str, service: str, endpoint: str) -> str:
    return f"{prefix}data.{service}.{endpoint}"
