"""Single-flight bookkeeping: which keys have a fetch under way on this worker.

The mark lives in memory on the worker that owns the key's partition (requests, data
and outcome topics are co-partitioned, so claim and release happen in one process). A
mark expires after ``timeout`` so a lost outcome (a crash between claim and fetch) only
delays the next fetch, never blocks it forever.
"""

from __future__ import annotations


class InFlight:
    def __init__(self, timeout: float):
        self.timeout = timeout
        self._deadlines: dict[str, float] = {}

    def claim(self, key: str, now: float) -> bool:
        """True if the caller may start a fetch for ``key`` (and now owns it)."""
        deadline = self._deadlines.get(key)
        if deadline is not None and deadline > now:
            return False
        self._deadlines[key] = now + self.timeout
        return True

    def release(self, key: str) -> None:
        self._deadlines.pop(key, None)

    def active(self, key: str, now: float) -> bool:
        deadline = self._deadlines.get(key)
        return deadline is not None and deadline > now

    def __len__(self) -> int:
        return len(self._deadlines)
