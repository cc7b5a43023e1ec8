"""Readers waiting for a key's refresh to land (``GET /cache/...?wait=SECONDS``).

Waiters sit on the worker that owns the key, where the materializer writes the entry and
where a fetch's failure outcome arrives; either wakes them all at once. The fetch itself
is single-flight (admission), so however many readers wait, one upstream call is made.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager


class Waiters:
    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}
        self._counts: dict[str, int] = defaultdict(int)
        #: key -> when the last of its readers gives up (while any waits).
        self._until: dict[str, float] = {}

    @contextmanager
    def watch(self, key: str, until: float | None = None) -> Iterator[asyncio.Event]:
        """An event set when ``key``'s next refresh lands (or fails). Register before
        asking for the refresh, so its landing cannot be missed; ``until``: when this
        reader gives up (its order tells the service's owner, ``until(key)``)."""
        event = self._events.setdefault(key, asyncio.Event())
        self._counts[key] += 1
        if until is not None:
            self._until[key] = max(until, self._until.get(key, until))
        try:
            yield event
        finally:
            self._counts[key] -= 1
            if not self._counts[key]:
                del self._counts[key]
                self._until.pop(key, None)
                if self._events.get(key) is event:
                    del self._events[key]

    def count(self, key: str) -> int:
        """Readers of this worker waiting for ``key`` now (the fetch agent values them)."""
        return self._counts.get(key, 0)

    def until(self, key: str) -> float | None:
        """When the last reader of this worker waiting for ``key`` gives up (None: none
        waits with a deadline)."""
        return self._until.get(key)

    def wake(self, key: str) -> None:
        event = self._events.pop(key, None)  # later readers wait for the next refresh
        self._until.pop(key, None)  # the woken ones wait no more
        if event is not None:
            event.set()

    def wake_all(self) -> None:
        """Wake every reader (the worker is stopping: each is answered with what it has,
        rather than holding the shutdown until its wait ends)."""
        for key in list(self._events):
            self.wake(key)

    def __len__(self) -> int:
        return sum(self._counts.values())
