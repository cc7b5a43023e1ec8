"""Single-flight bookkeeping: which keys have a fetch under way on this worker.

The mark lives in memory on the worker that owns the key's partition (requests, data
and outcome topics are co-partitioned, so claim and release happen in one process). A
mark expires after ``timeout`` so a lost outcome (a crash between claim and fetch) only
delays the next fetch, never blocks it forever; expired marks are pruned as new ones are
made and by the sweeper's timer, so the map holds about the keys claimed in the last
``timeout`` seconds, however many distinct keys requests name.

A mark also remembers the read rate its fetch order carried. The order waits in the
service's queue ranked by that rate; reads of the key meanwhile are not asked again,
unless the key's rate has grown by ``REGRADE`` since (a key that turns out popular after
its first read): then its order is sent again with the new rate, at most a few times.
Likewise when a reader waits for it (``?wait=``) while the order says none does any more
(``readers_until``): once per reader's wait at most.
"""

from __future__ import annotations

from itertools import islice

from quotacache.policy.queue import REGRADE

#: Seconds the clock that stamps an answer's ``fetched_at`` (the fetching worker's) may
#: run behind the one that made the mark.
ANSWER_SKEW = 5.0


class InFlight:
    def __init__(self, timeout: float):
        self.timeout = timeout
        self._deadlines: dict[str, float] = {}
        #: The read rate each claimed key's order carried (last sent).
        self._rates: dict[str, float] = {}
        #: Till when each claimed key's order said a reader waits (last sent).
        self._until: dict[str, float] = {}

    def claim(self, key: str, now: float, rate: float = 0.0,
              until: float | None = None) -> bool:
        """True if the caller may start a fetch for ``key`` (and now owns it)."""
        deadline = self._deadlines.get(key)
        if deadline is not None and deadline > now:
            return False
        self.prune(now, at_most=64)  # amortised O(1) per claim; the sweeper does the rest
        self._deadlines.pop(key, None)  # re-inserted last: the dict stays in deadline order
        self._deadlines[key] = now + self.timeout
        self._rates[key] = rate
        self._until[key] = until or 0.0
        return True

    def grew(self, key: str, rate: float, now: float = 0.0, until: float | None = None
             ) -> bool:
        """Is there news for the claimed key's waiting order: its read rate grew by
        ``REGRADE`` since the order was sent, or a reader waits till ``until`` while the
        order says none waits after ``now``?"""
        sent = self._rates.get(key)
        if sent is None:
            return False
        return (rate > 0 and rate >= REGRADE * sent) or (
            until is not None and until > now >= self._until.get(key, 0.0))

    def regrade(self, key: str, rate: float, now: float = 0.0, until: float | None = None
                ) -> bool:
        """``grew``, and if so remember what the re-sent order carries."""
        if not self.grew(key, rate, now, until):
            return False
        self._rates[key] = max(rate, self._rates[key])
        self._until[key] = max(until or 0.0, self._until.get(key, 0.0))
        return True

    def prune(self, now: float, at_most: int | None = None) -> None:
        """Drop expired marks from the front (marks are kept in the order they expire);
        ``at_most`` bounds the work of one call."""
        expired = []
        for key, deadline in islice(self._deadlines.items(), at_most):
            if deadline > now:
                break
            expired.append(key)
        for key in expired:
            del self._deadlines[key]
            self._rates.pop(key, None)
            self._until.pop(key, None)

    def release(self, key: str, fetched_at: float | None = None) -> None:
        """The fetch of ``key`` is over. Data ``fetched_at`` well before the mark was made
        (a record another producer published, a replay) is not its answer: the mark stays,
        or a read asking for younger data meanwhile would make a second call."""
        deadline = self._deadlines.get(key)
        if (fetched_at is not None and deadline is not None
                and fetched_at < deadline - self.timeout - ANSWER_SKEW):
            return
        self._deadlines.pop(key, None)
        self._rates.pop(key, None)
        self._until.pop(key, None)

    def active(self, key: str, now: float) -> bool:
        deadline = self._deadlines.get(key)
        return deadline is not None and deadline > now

    def __len__(self) -> int:
        return len(self._deadlines)
