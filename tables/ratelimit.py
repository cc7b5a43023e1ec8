"""The rate limiter's state: calls per scope per second in a windowed (tumbling 1 s) table.

All fetches of a service arrive on the ``internal.fetch`` partition its name hashes to, and
the table's changelog partition is that of the event being processed, so one partition
(one worker at a time) owns all of a service's counts. A worker that takes the partition
over after a crash restores the counts from the changelog before it makes any call.

The decision itself is ``limiter.decide``; this module only reads and writes buckets.
Reads and writes must happen inside stream iteration (Faust's rule for table writes).
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import faust

from quotacache.settings import Settings

from .limiter import Decision, Scope, allowance, decide, used


class RateLimiter:
    def __init__(self, app: faust.App, settings: Settings, *, headroom: float = 0.1,
                 skew: float = 0.25):
        self.settings = settings
        self.headroom = headroom
        self.skew = skew
        longest = max((lim.seconds for svc in settings.services.values()
                       for lim in [*svc.limits, *svc.endpoint_limits,
                                   *(l for ep in svc.endpoints.values() for l in ep.limits or [])]),
                      default=60.0)
        self.windows = app.Table(
            "ratelimit", default=int, partitions=settings.broker.partitions,
            help="upstream calls per scope per second",
        ).tumbling(1.0, expires=timedelta(seconds=math.ceil(longest + skew) + 5))
        self._counts_table = self.windows.table

    def scopes(self, service: str, endpoint: str) -> list[Scope]:
        """The service-wide scope and the endpoint's scope, each with its limits."""
        config = self.settings.service(service)
        return [Scope(service, tuple(config.limits)),
                Scope(f"{service}/{endpoint}", tuple(config.limits_for(endpoint)))]

    def _bucket(self, scope: str, second: int) -> int:
        window = self._counts_table.window.current(second + 0.5)
        return int(self._counts_table.get((scope, window)) or 0)

    def try_acquire(self, service: str, endpoint: str, now: float) -> Decision:
        """Decide one call and, if allowed, count it in every scope before it is made."""
        scopes = self.scopes(service, endpoint)
        decision = decide(scopes, self._bucket, now, headroom=self.headroom, skew=self.skew)
        if decision.allowed:
            window = self._counts_table.window.current(now)
            for scope in scopes:
                key = (scope.name, window)
                self._counts_table[key] = int(self._counts_table.get(key) or 0) + 1
        return decision

    def usage(self, service: str, now: float) -> list[dict[str, Any]]:
        """Calls used and allowed in each of the service's (and its endpoints') limits."""
        config = self.settings.service(service)
        scopes = [Scope(service, tuple(config.limits))] + [
            Scope(f"{service}/{ep}", tuple(config.limits_for(ep))) for ep in config.endpoints]
        rows = []
        for scope in scopes:
            for limit in scope.limits:
                count = used(scope.name, limit, self._bucket, now, self.skew)
                if scope.name == service or count:
                    rows.append({"scope": scope.name, "limit": str(limit), "used": count,
                                 "allowance": allowance(limit, self.headroom)})
        return rows
