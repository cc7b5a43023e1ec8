"""The ``service-health`` table: pauses, upstream hints and breaker state per service.

Written only by the fetch agent, on the partition that owns the service, so a worker that
takes a service over after a crash inherits its pauses and breaker state. The transitions
themselves are ``policy.health.ServiceHealth``; this module only stores them.
"""

from __future__ import annotations

import faust

from quotacache.policy.health import ServiceHealth
from quotacache.tables.read_through import ReadThrough


class HealthTable:
    def __init__(self, app: faust.App, partitions: int):
        self._table = app.Table("service-health", partitions=partitions,
                                help="pauses, hints and breaker state per service")
        self._states = ReadThrough(app, self._table)

    @property
    def name(self) -> str:
        return self._table.name

    def get(self, service: str) -> ServiceHealth:
        return ServiceHealth.from_dict(self._states.get(service))

    def put(self, service: str, health: ServiceHealth) -> None:
        """Store a changed state (inside stream iteration: Faust's rule for writes)."""
        self._states.set(service, health.to_dict())
