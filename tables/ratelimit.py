"""The rate limiter's state: calls per scope per second in a windowed (tumbling 1 s) table.

All fetches of a service arrive on the ``internal.fetch`` partition its name hashes to, and
the table's changelog partition is that of the event being processed, so one partition
(one worker at a time) owns all of a service's counts. A worker that takes the partition
over after a crash restores the counts from the changelog before it makes any call.

The decision itself is ``policy.limits.decide``; this module only reads and writes
buckets. Reads and writes must happen inside stream iteration (Faust's rule for table
writes). Each call is also appended to a durable ``CallJournal`` before it is sent, and
each bucket counts ``max(table, journal)``: spent budget survives the loss of the
changelog (a memory-only broker restarted, the whole stack restarted).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import faust

from quotacache.policy.limits import Decision, Scope, allowance, decide, endpoint_share, used
from quotacache.settings import Priority, Settings
from quotacache.tables.journal import CallJournal

#: Seconds of arrival jitter each limit's count allows for (see limiter.py).
SKEW = 0.25


class RateLimiter:
    def __init__(self, app: faust.App, settings: Settings):
        self.settings = settings
        longest = max((lim.seconds for svc in settings.services.values()
                       for lim in [*svc.limits, *svc.endpoint_limits,
                                   *(x for ep in svc.endpoints.values() for x in ep.limits or [])]),
                      default=60.0)
        self.windows = app.Table(
            "ratelimit", default=int, partitions=settings.broker.partitions,
            help="upstream calls per scope per second",
        ).tumbling(1.0, expires=timedelta(seconds=math.ceil(longest + SKEW) + 5))
        self._counts = self.windows.table
        self.journal = CallJournal(journal_dir(settings), worker_name(settings),
                                   horizon=longest + SKEW + 1.0,
                                   fsync=settings.limits_fsync)

    @property
    def name(self) -> str:
        return self._counts.name

    def service_scope(self, service: str) -> Scope:
        return Scope(service, tuple(self.settings.service(service).limits))

    def endpoint_scope(self, service: str, endpoint: str) -> Scope:
        return Scope(f"{service}/{endpoint}",
                     tuple(self.settings.service(service).limits_for(endpoint)), share=1.0)

    def open_journal(self, now: float) -> None:
        """Count the calls every worker of this app journaled before this start."""
        self.journal.load(now)

    def _bucket(self, scope: str, second: int) -> int:
        window = self._counts.window.current(second + 0.5)
        return max(int(self._counts.get((scope, window)) or 0),
                   self.journal.count(scope, second))

    def check(self, service: str, scopes: Sequence[Scope], now: float,
              priority: Priority = Priority.CRITICAL) -> Decision:
        """May one more call of ``priority`` be made in every one of ``scopes``?"""
        config = self.settings.service(service)
        shares = config.priority_shares
        scopes = [scope if scope.share is None else replace(scope, share=endpoint_share(
            shares, priority.value, self._priority_of(service, scope).value))
            for scope in scopes]
        return decide(scopes, self._bucket, now, headroom=config.headroom, skew=SKEW,
                      share=shares[priority.value])

    def _priority_of(self, service: str, scope: Scope) -> Priority:
        """The configured priority of the endpoint an endpoint scope belongs to."""
        endpoint = scope.name.split("/", 1)[1]
        return self.settings.service(service).endpoints[endpoint].priority

    def record(self, scopes: Sequence[Scope], now: float) -> None:
        """Count one call in every scope (before it is sent), in the table and the journal."""
        self.journal.append(now, [scope.name for scope in scopes])
        window = self._counts.window.current(now)
        for scope in scopes:
            key = (scope.name, window)
            self._counts[key] = int(self._counts.get(key) or 0) + 1

    def usage(self, service: str, now: float) -> list[dict[str, Any]]:
        """Calls used and allowed in each of the service's (and its busy endpoints') limits."""
        config = self.settings.service(service)
        scopes = [self.service_scope(service)] + [
            self.endpoint_scope(service, ep) for ep in config.endpoints]
        rows = []
        for scope in scopes:
            for limit in scope.limits:
                count = used(scope.name, limit, self._bucket, now, SKEW)
                if scope.name == service or count:
                    cap = allowance(limit, config.headroom)
                    rows.append({"scope": scope.name, "limit": str(limit), "used": count,
                                 "allowance": cap, "left": max(0, cap - count)})
        return rows


def journal_dir(settings: Settings) -> Path:
    """Where the call journals of this app live: never inside a worker's data dir."""
    base = settings.journal_dir or settings.data_dir.parent / "quotacache-journal"
    return base / settings.app_id


def worker_name(settings: Settings) -> str:
    """A name for this worker's journal that stays the same across its restarts: its
    data dir (each worker has its own) as a short hash."""
    return hashlib.sha1(str(settings.data_dir.resolve()).encode()).hexdigest()[:12]


class ServiceBudget:
    """The rate limiter seen from one service: the service's scope plus an endpoint's."""

    def __init__(self, limiter: RateLimiter, service: str):
        self.limiter = limiter
        self.service = service
        self.service_scope = limiter.service_scope(service)

    def _scopes(self, endpoint: str) -> list[Scope]:
        return [self.service_scope, self.limiter.endpoint_scope(self.service, endpoint)]

    def check(self, endpoint: str, now: float, priority: Priority) -> Decision:
        return self.limiter.check(self.service, self._scopes(endpoint), now, priority)

    def record(self, endpoint: str, now: float) -> None:
        self.limiter.record(self._scopes(endpoint), now)
