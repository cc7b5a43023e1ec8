"""What the upstream has told us about a service: pauses, its own rate hints, and failures.

``ServiceHealth`` is pure state with transitions driven by call outcomes and a clock; the
fetch agent keeps one per service in the ``service-health`` table (on the partition that
owns the service, so a worker taking over after a crash inherits pauses and breaker state).

* A 429 pauses the whole service until its Retry-After has passed (or
  ``default_retry_after`` when the upstream does not say). How many calls the upstream
  takes then is unknown too, so the first call after the pause is a probe (below).
* ``X-RateLimit-Remaining`` / ``-Reset`` style hints lower the allowance: once the
  upstream says none remain, no call is made until its reset time. How many calls the
  reset frees is unknown (one, on a sliding window), so the first call after it is a
  probe: the others wait for an answer and its new hint (or ``PROBE_WAIT`` seconds).
* Consecutive failures (5xx, timeouts, connection errors, garbage) open the circuit
  breaker for ``cooldown`` seconds; then one trial call is let through (half-open): its
  success closes the breaker, its failure opens it again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

#: After the reset of an exhausted hint, calls wait this long at most for the probe's answer.
PROBE_WAIT = 10.0


class Breaker(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass
class ServiceHealth:
    paused_until: float = 0.0
    pause_reason: str = ""
    hint_remaining: int | None = None
    hint_reset: float = 0.0
    hint_limit: int | None = None
    breaker: str = Breaker.CLOSED.value
    consecutive_failures: int = 0
    opened_at: float = 0.0
    trial_in_flight: bool = False
    #: The call made after an exhausted hint's reset is under way until then.
    probe_until: float = 0.0
    #: When the answer behind the stored hint came (or the last 429): the feedback of an
    #: older answer can arrive later (a success sends its data first), and is stale.
    hint_at: float = 0.0

    # -- decisions -------------------------------------------------------------------
    def admits(self, now: float, cooldown: float) -> tuple[bool, str]:
        """May a call be made now? (False, why) when paused, hinted out, or open."""
        if now < self.paused_until:
            return False, f"paused until {self.paused_until:.0f} ({self.pause_reason})"
        if self.hint_remaining is not None and now < self.hint_reset and self.hint_remaining <= 0:
            return False, "upstream reports no calls remaining"
        if now < self.probe_until:
            return False, "waiting for the upstream's answer after its reset"
        state = self.breaker_state(now, cooldown)
        if state is Breaker.OPEN:
            return False, "circuit breaker open"
        if state is Breaker.HALF_OPEN and self.trial_in_flight:
            return False, "circuit breaker half-open: trial call in flight"
        return True, ""

    def breaker_state(self, now: float, cooldown: float) -> Breaker:
        if self.breaker == Breaker.OPEN.value and now >= self.opened_at + cooldown:
            return Breaker.HALF_OPEN
        return Breaker(self.breaker)

    # -- transitions -------------------------------------------------------------------
    def on_call(self, now: float, cooldown: float) -> None:
        """A call is being made: in half-open state it is the single trial."""
        if self.breaker_state(now, cooldown) is Breaker.HALF_OPEN:
            self.breaker = Breaker.HALF_OPEN.value
            self.trial_in_flight = True
        if self.hint_remaining is not None:
            if self.hint_remaining <= 0 and now >= self.hint_reset:
                # The probe; the spent hint is forgotten, so an upstream that stops
                # sending hints is not probed call by call for ever.
                self.probe_until = now + PROBE_WAIT
                self.hint_remaining = None
            else:
                self.hint_remaining -= 1

    def on_success(self, at: float | None = None) -> None:
        """A call answered (at ``at``): only an answer that came after the probe left
        can be the probe's."""
        self._probe_answered(at)
        self.consecutive_failures = 0
        self.breaker = Breaker.CLOSED.value
        self.trial_in_flight = False

    def on_failure(self, now: float, threshold: int) -> None:
        self._probe_answered(now)
        self.consecutive_failures += 1
        self.trial_in_flight = False
        if self.breaker != Breaker.CLOSED.value or self.consecutive_failures >= threshold:
            self.breaker = Breaker.OPEN.value
            self.opened_at = now

    def on_rate_limited(self, now: float, retry_after: float | None, default: float) -> None:
        wait = retry_after if retry_after is not None else default
        self.probe_until = 0.0
        self.paused_until = max(self.paused_until, now + wait)
        self.pause_reason = "429 from upstream"
        self.trial_in_flight = False
        # The upstream has no call left until the pause ends: then one probe goes first.
        self.hint_remaining = 0
        self.hint_reset = self.paused_until
        self.hint_at = max(self.hint_at, now)

    def on_hint(self, remaining: int, reset_at: float, limit: int | None = None,
                at: float | None = None) -> None:
        """The upstream's count in an answer that came at ``at``; ignored when an answer
        that came later (or a 429) already spoke."""
        if at is not None:
            if at < self.hint_at:
                return
            self.hint_at = at
        self._probe_answered(at)
        self.hint_remaining = remaining
        self.hint_reset = reset_at
        self.hint_limit = limit

    def _probe_answered(self, at: float | None) -> None:
        if at is None or at >= self.probe_until - PROBE_WAIT:
            self.probe_until = 0.0

    def hinted_use(self, now: float) -> float | None:
        """The upstream's own view of its budget use (0..1), while its hint is current."""
        if self.hint_limit and self.hint_remaining is not None and now < self.hint_reset:
            return max(0.0, min(1.0, 1 - self.hint_remaining / self.hint_limit))
        return None

    # -- storage -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, value: dict[str, Any] | None) -> ServiceHealth:
        if not value:
            return cls()
        known = {k: v for k, v in value.items() if k in cls.__dataclass_fields__}
        return cls(**known)
