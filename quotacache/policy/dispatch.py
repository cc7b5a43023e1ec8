"""Which queued fetches may be called now: a pure function of the queue, health and budget.

Serves the queue in priority order (then age). Stops at the first refusal that applies to
the whole service (a pause, the breaker, a service-wide limit, no free call slot); skips
only the endpoint when the refusal is the endpoint's own limit, so one busy endpoint does
not hold back the others. Each selected call is recorded in the budget before the next
decision, so the selection as a whole never exceeds any limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from quotacache.policy.health import ServiceHealth
from quotacache.policy.limits import Decision
from quotacache.policy.queue import FetchQueue, Queued
from quotacache.settings import Priority


class Budget(Protocol):
    def check(self, endpoint: str, now: float, priority: Priority) -> Decision: ...

    def record(self, endpoint: str, now: float) -> None: ...


@dataclass
class Selection:
    calls: list[Queued] = field(default_factory=list)
    #: Entries left waiting, by the reason they wait.
    waiting: list[Queued] = field(default_factory=list)
    stopped_by: str | None = None


def select_calls(queue: FetchQueue, health: ServiceHealth, budget: Budget, now: float, *,
                 service: str, cooldown: float, free_slots: int,
                 shares: dict[str, float] | None = None) -> Selection:
    selection = Selection()
    blocked_endpoints: set[tuple[str, int]] = set()
    for queued in queue.in_order():
        if selection.stopped_by:
            selection.waiting.append(queued)
            continue
        share = (shares or {}).get(queued.order.priority.value, 1.0)
        admitted, why = health.admits(now, cooldown, share)
        if not admitted or free_slots <= 0:
            selection.stopped_by = why or "no free call slot"
            selection.waiting.append(queued)
            continue
        endpoint = queued.order.endpoint
        if (endpoint, queued.rank) in blocked_endpoints:
            selection.waiting.append(queued)
            continue
        decision = budget.check(endpoint, now, queued.order.priority)
        if not decision.allowed:
            selection.waiting.append(queued)
            if decision.blocked_by and decision.blocked_by.startswith(service + " "):
                selection.stopped_by = decision.blocked_by
            else:
                blocked_endpoints.add((endpoint, queued.rank))
            continue
        budget.record(endpoint, now)
        health.on_call(now, cooldown)
        free_slots -= 1
        selection.calls.append(queued)
    return selection
