"""The cache table: one RocksDB-backed Faust table of entries keyed by ``service/endpoint/symbol``.

It is written only by the materializer (from the data topics) and the sweeper's
tombstones, both inside stream iteration, on the partition that owns the key.
"""

from __future__ import annotations

from collections.abc import Iterator

import faust

from .freshness import CacheEntry


class CacheTable:
    def __init__(self, app: faust.App, partitions: int):
        self.table = app.Table("cache", partitions=partitions,
                               help="cached upstream data")

    @property
    def name(self) -> str:
        return self.table.name

    def get(self, key: str) -> CacheEntry | None:
        return CacheEntry.from_dict(self.table.get(key))

    def put(self, key: str, entry: CacheEntry) -> None:
        self.table[key] = entry.to_dict()

    def delete(self, key: str) -> None:
        if key in self.table:
            del self.table[key]

    def items(self) -> Iterator[tuple[str, CacheEntry]]:
        for key, value in list(self.table.items()):
            entry = CacheEntry.from_dict(value)
            if entry is not None:
                yield key, entry

    def __len__(self) -> int:
        return len(self.table)
