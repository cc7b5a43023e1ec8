"""Update strategies: how far past its TTL a monitored key may go before it is refreshed.

Pure decisions against a clock the caller passes in; the state lives in global tables
(``tables.control``). A service's strategy follows its budget use with hysteresis:
above ``conservative_above`` it becomes CONSERVATIVE, above ``minimal_above`` MINIMAL,
and only below ``normal_below`` does it return to NORMAL; a step down (towards NORMAL)
also waits ``min_dwell`` seconds after the last change, so it does not flap. A
volatility signal makes a symbol (or every symbol, for ``*``) AGGRESSIVE for a while,
but only where the service is NORMAL: the budget wins. A manual pin holds a service on
one strategy until it is released.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Strategy(StrEnum):
    AGGRESSIVE = "AGGRESSIVE"
    NORMAL = "NORMAL"
    CONSERVATIVE = "CONSERVATIVE"
    MINIMAL = "MINIMAL"


HISTORY = 50


@dataclass(frozen=True)
class Thresholds:
    conservative_above: float = 0.8
    minimal_above: float = 0.9
    normal_below: float = 0.4
    min_dwell: float = 60.0


@dataclass
class StrategyState:
    """One service's strategy, whether it is pinned, and how it got there."""

    strategy: str = Strategy.NORMAL.value
    since: float = 0.0
    pinned: bool = False
    reason: str = "start"
    history: list[dict[str, Any]] = field(default_factory=list)

    def change(self, strategy: Strategy, reason: str, now: float, usage: float | None = None
               ) -> None:
        self.history = [*self.history, {"at": now, "from": self.strategy, "to": strategy.value,
                                        "reason": reason, "usage": usage}][-HISTORY:]
        self.strategy, self.since, self.reason = strategy.value, now, reason

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, value: dict[str, Any] | None) -> StrategyState:
        if not value:
            return cls()
        return cls(**{k: v for k, v in value.items() if k in cls.__dataclass_fields__})


def budget_target(current: Strategy, usage: float, t: Thresholds) -> Strategy:
    """Where budget use alone says a service should be, from where it is (hysteresis)."""
    if usage > t.minimal_above:
        return Strategy.MINIMAL
    if usage > t.conservative_above:
        return Strategy.MINIMAL if current is Strategy.MINIMAL else Strategy.CONSERVATIVE
    if usage < t.normal_below:
        return Strategy.NORMAL
    return current if current is not Strategy.AGGRESSIVE else Strategy.NORMAL


def adjust(state: StrategyState, usage: float, now: float, t: Thresholds) -> bool:
    """Apply the budget rule to ``state``; True when it changed (and was recorded)."""
    if state.pinned:
        return False
    current = Strategy(state.strategy)
    target = budget_target(current, usage, t)
    if target is current:
        return False
    stepping_down = list(Strategy).index(target) < list(Strategy).index(current)
    if stepping_down and now - state.since < t.min_dwell:
        return False
    state.change(target, f"budget use {usage:.0%}", now, usage)
    return True


def pin(state: StrategyState, strategy: Strategy, now: float) -> None:
    state.change(strategy, "manual pin", now)
    state.pinned = True


def release(state: StrategyState, now: float) -> None:
    if state.pinned:
        state.pinned = False
        state.change(Strategy(state.strategy), "manual pin released", now)


def effective(state: StrategyState, volatile_until: float | None, now: float) -> Strategy:
    """The strategy for one symbol: AGGRESSIVE while it is volatile, if the budget allows."""
    current = Strategy(state.strategy)
    if volatile_until is not None and now < volatile_until and current is Strategy.NORMAL:
        return Strategy.AGGRESSIVE
    return current


def budget_use(rows: list[dict[str, Any]], service: str, hinted: float | None) -> float:
    """Calls in window / allowance, the highest over the service's own limits, or the
    upstream's own view (``hinted``) when that is higher."""
    use = max((r["used"] / r["allowance"] for r in rows
               if r["scope"] == service and r["allowance"]), default=0.0)
    return max(use, hinted or 0.0)
