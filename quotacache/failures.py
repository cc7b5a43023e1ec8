"""The pipeline's own failures, so that ``/health`` says when it cannot fetch or admit.

Faust restarts an agent that crashes, and the agents catch a bug's exception to keep
going on the next record: either way the error is logged and every read is still
answered, while the pipeline may be failing on each record (DESIGN.md: nothing fails
silently). Each part that fails is counted; ``problem`` names one that failed
FAILING_AFTER times within the last WINDOW seconds, with its last error.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable

from quotacache.redact import redact


class Failures:
    FAILING_AFTER = 3
    WINDOW = 60.0

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        #: part -> when it failed lately (the last FAILING_AFTER times). Parts are the
        #: pipeline's own names (agents, steps), never input: the maps stay small.
        self.recent: dict[str, deque[float]] = {}
        self.last_error: dict[str, str] = {}
        self.total: Counter[str] = Counter()

    def record(self, part: str, exc: BaseException) -> None:
        self.recent.setdefault(part, deque(maxlen=self.FAILING_AFTER)).append(self.clock())
        self.last_error[part] = redact(f"{type(exc).__name__}: {exc}")[:300]
        self.total[part] += 1

    def problem(self) -> str | None:
        """Why the pipeline is failing now, or None when it is not."""
        now = self.clock()
        for part, times in self.recent.items():
            if len(times) == self.FAILING_AFTER and now - times[0] < self.WINDOW:
                return (f"{part} failing ({self.FAILING_AFTER} times in "
                        f"{now - times[0]:.0f} s): {self.last_error[part]}")
        return None
