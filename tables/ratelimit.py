"""The rate limiter's state: when recent calls were decided, per scope, in a table.

All fetches of a service arrive on the ``internal.fetch`` partition its name hashes to, and
the table's changelog partition is that of the event being processed, so one partition
(one worker at a time) owns all of a service's counts. A worker that takes the partition
over after a crash restores them from the changelog before it makes any call.

The decision itself is ``policy.limits.decide``; this module only reads and writes
decision times (to the millisecond; older than the longest window they are dropped on the
next write), and keeps in memory how much earlier answered calls count from. Writes must
happen inside stream iteration (Faust's rule for table writes). Each call is also
appended to a durable ``CallJournal`` before it is sent, and a scope's count is the union
of the table's times and the journal's: spent budget survives the loss of the changelog
(a memory-only broker restarted, the whole stack restarted).
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faust

from quotacache.policy.limits import Decision, Scope, allowance, counts_from, decide, used
from quotacache.settings import Settings
from quotacache.tables.journal import CallJournal
from quotacache.tables.read_through import ReadThrough


class RateLimiter:
    def __init__(self, app: faust.App, settings: Settings):
        self.settings = settings
        self.horizon = max((lim.seconds + svc.arrival_jitter
                            for svc in settings.services.values()
                            for lim in [*svc.limits, *svc.endpoint_limits,
                                        *(x for ep in svc.endpoints.values()
                                          for x in ep.limits or [])]), default=60.0)
        self._table = app.Table("ratelimit", default=list,
                                partitions=settings.broker.partitions,
                                help="decision times of recent upstream calls per scope")
        self._times = ReadThrough(app, self._table)
        self.journal = CallJournal(journal_dir(settings), worker_name(settings),
                                   horizon=self.horizon + 1.0, fsync=settings.limits_fsync)
        #: scope -> recorded time -> the earlier times that calls recorded then count
        #: from, once answered (``answered``). This worker's memory only: the table and
        #: the journal keep the recorded times, which count longer (safe).
        self._moved: dict[str, dict[float, list[float]]] = {}

    @property
    def name(self) -> str:
        return self._table.name

    def open_journal(self, now: float) -> None:
        """Count the calls every worker of this app journaled before this start."""
        self.journal.load(now)
        self._times.forget()

    def reload_journal(self, now: float) -> None:
        """Read every worker's journal again (at a takeover), if this worker keeps one."""
        if self.journal.is_open:
            self.journal.load(now)
            self._times.forget()

    def service_scope(self, service: str) -> Scope:
        return Scope(service, tuple(self.settings.service(service).limits))

    def endpoint_scope(self, service: str, endpoint: str) -> Scope:
        return Scope(f"{service}/{endpoint}",
                     tuple(self.settings.service(service).limits_for(endpoint)))

    def decided(self, scope: str) -> list[float]:
        """When ``scope``'s recent calls were decided: the table's and the journal's."""
        recorded = self._times.get(scope) or []
        journaled = self.journal.times(scope)
        if not journaled:
            return list(recorded)
        # Both hold the same calls; calls sent in the same millisecond are several
        # calls, so merge counts per time (the larger of the two), not a set.
        return sorted((Counter(recorded) | Counter(journaled)).elements())

    def times(self, scope: str) -> list[float]:
        """The times ``scope``'s recent calls count from: when each was decided, or, for
        a call this worker has had the answer of, a jitter before the answer
        (``answered``)."""
        times = self.decided(scope)
        moved = self._moved.get(scope)
        if not moved:
            return times
        pending = {at: list(earlier) for at, earlier in moved.items()}
        counted = [pending[t].pop() if pending.get(t) else t for t in times]
        return sorted(counted)

    def answered(self, service: str, endpoint: str, decided_at: float,
                 answered_at: float) -> None:
        """The call of ``endpoint`` decided at ``decided_at`` was answered at
        ``answered_at``: the upstream counted it by then, so it counts from a jitter
        before (``policy.limits.counts_from``), in this worker's memory."""
        decided = round(decided_at, 3)  # as ``record`` keeps it
        jitter = self.settings.service(service).arrival_jitter
        earlier = counts_from(decided, answered_at, jitter)
        oldest = answered_at - self.horizon
        for scope in (self.service_scope(service), self.endpoint_scope(service, endpoint)):
            moved = self._moved.setdefault(scope.name, {})
            for old in [t for t in moved if t <= oldest]:
                del moved[old]
            moved.setdefault(decided, []).append(earlier)

    def record(self, scopes: Sequence[Scope], now: float) -> None:
        """Count one call in every scope (before it is sent), in the journal and the table."""
        at = round(now, 3)
        self.journal.append(at, [scope.name for scope in scopes])
        oldest = now - self.horizon
        for scope in scopes:
            recent = [t for t in self._times.get(scope.name) or [] if t > oldest]
            self._times.set(scope.name, [*recent, at])

    def usage(self, service: str, now: float) -> list[dict[str, Any]]:
        """Calls used and allowed in each of the service's (and its busy endpoints') limits."""
        config = self.settings.service(service)
        scopes = [self.service_scope(service)] + [
            self.endpoint_scope(service, ep) for ep in config.endpoints]
        rows = []
        for scope in scopes:
            times = self.times(scope.name)
            for limit in scope.limits:
                count = used(times, limit, now, config.arrival_jitter)
                if scope.name == service or count:
                    cap = allowance(limit, config.headroom)
                    rows.append({"scope": scope.name, "limit": str(limit), "used": count,
                                 "allowance": cap, "left": max(0, cap - count)})
        return rows


def journal_dir(settings: Settings) -> Path:
    """Where the call journals of this app live: never inside a worker's data dir, and,
    unless configured, never where the working directory decides. Beside an absolute
    data dir; for a relative one (the default), in the user's state directory: a worker
    started again from another directory has another data dir, but the calls it sent
    are the same key's."""
    if settings.journal_dir is not None:
        base = settings.journal_dir
    elif settings.data_dir.is_absolute():
        base = settings.data_dir.parent / "quotacache-journal"
    else:
        state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
        base = Path(state) / "quotacache" / "journal"
    return base.resolve() / settings.app_id


def worker_name(settings: Settings) -> str:
    """A name for this worker's journal that stays the same across its restarts: its
    data dir (each worker has its own) as a short hash."""
    return hashlib.sha1(str(settings.data_dir.resolve()).encode()).hexdigest()[:12]


class ServiceBudget:
    """The rate limiter seen from one service: the service's scope plus an endpoint's."""

    def __init__(self, limiter: RateLimiter, service: str):
        self.limiter = limiter
        self.service = service
        self.config = limiter.settings.service(service)
        self.service_scope = limiter.service_scope(service)
        #: Each scope's times, read once per decision (one drain asks them for every
        #: queued call; each read copies them, and after a restart merges the journal's).
        #: ``record`` forgets them; nothing else writes the table while a drain decides
        #: (``RateLimiter.answered`` runs between drains, and only moves times earlier).
        self._times: dict[str, list[float]] = {}
        #: Each endpoint's decision at one instant, until a call is recorded: a drain
        #: asks it again for every queued call of that endpoint.
        self._decisions: dict[str, Decision] = {}
        self._decided_at: float | None = None

    def scopes(self, endpoint: str) -> list[Scope]:
        return [self.service_scope, self.limiter.endpoint_scope(self.service, endpoint)]

    def check(self, endpoint: str, now: float) -> Decision:
        if now != self._decided_at:
            self._decisions.clear()
            self._decided_at = now
        decision = self._decisions.get(endpoint)
        if decision is None:
            decision = self._decisions[endpoint] = decide(
                self.scopes(endpoint), self.times, now, headroom=self.config.headroom,
                jitter=self.config.arrival_jitter)
        return decision

    def record(self, endpoint: str, now: float) -> None:
        self._times.clear()
        self._decisions.clear()
        self.limiter.record(self.scopes(endpoint), now)

    def times(self, scope: str) -> list[float]:
        times = self._times.get(scope)
        if times is None:
            times = self._times[scope] = self.limiter.times(scope)
        return times

    @property
    def headroom(self) -> float:
        return self.config.headroom

    @property
    def jitter(self) -> float:
        return self.config.arrival_jitter
