"""A table's values kept decoded in memory, for tables the dispatcher reads on every decision.

Reading a RocksDB table costs a key encoding, a get in each partition's database and a
JSON decode: the rate limiter and the service health were read that way several times
per drain and per tick. Their values change in two ways only, and both are seen here:
this worker's own writes (``set``), and the store rewritten under it when partitions
move (assignment, revocation, the end of a recovery), after which everything is read
again. Only a partition's owner sees every change: a standby's store also changes with
each changelog record it mirrors, unseen here, so these values are for the worker that
owns the key (the only one that decides for it). Values handed out are shared: callers
must not change them in place.
"""

from __future__ import annotations

from typing import Any

import faust


class ReadThrough:
    def __init__(self, app: faust.App, table: Any):
        self.table = table
        self._values: dict[Any, Any] = {}
        app.on_partitions_assigned.connect(self._forget)
        app.on_partitions_revoked.connect(self._forget)
        table.on_recover(self._forget)

    def get(self, key: Any) -> Any:
        """The table's value for ``key`` (its default, or None, when it has none)."""
        try:
            return self._values[key]
        except KeyError:
            value = self._values[key] = self.table.get(key)
            return value

    def set(self, key: Any, value: Any) -> None:
        """Write ``value`` (inside stream iteration: Faust's rule for table writes)."""
        self.table[key] = value
        self._values[key] = value

    def forget(self) -> None:
        self._values.clear()

    async def _forget(self, *args: Any, **kwargs: Any) -> None:  # signals and on_recover
        self.forget()
