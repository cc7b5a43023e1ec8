"""The tables' persisted offsets against their changelogs' ends, before Faust starts.

A rotation (``dev/rotation.py``) re-creates the changelogs under the same names. The
rotating worker sets its own stores' offsets to match the new generation, but a data dir
that was not there at the time (a standby stopped then, a copy restored from a backup)
keeps offsets past the new ends, and Faust's recovery stops on it (``ConsistencyError``:
found by ``test_a_standby_restarted_with_its_data_dir_after_a_rotation_takes_over``).
Such a data dir is stale, like one written against another cluster: the worker discards
it and recovers everything from the changelogs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from faust.stores.rocksdb import Store

from quotacache.dev.broker_probe import log_ends

log = logging.getLogger(__name__)

#: A store's RocksDB path -> (its changelog topic, partition).
Stores = Mapping[Path, tuple[str, int]]


def persisted_offset(path: Path) -> int | None:
    """The changelog offset a store last applied (None: no store, or none recorded).
    Raises when the store cannot be read."""
    if not path.exists():
        return None
    from rocksdict import AccessType, Options, Rdict

    db = Rdict(str(path), options=Options(raw_mode=True), access_type=AccessType.read_only())
    try:
        raw = db.get(Store.offset_key)
    finally:
        db.close()
    return None if raw is None else int(raw)


async def stores_ahead(bootstrap: str, stores: Stores) -> list[str]:
    """Why each store that Faust could not recover from is stale: its persisted offset is
    at or past its changelog's end (or it cannot be read). Empty when all are fine."""
    stale: list[str] = []
    persisted: dict[Path, int] = {}
    for path in stores:
        try:
            offset = persisted_offset(path)
        except Exception as exc:  # a store RocksDB cannot open: recover it, like Faust would fail
            stale.append(f"{path.name}: unreadable ({exc})")
            continue
        if offset is not None:
            persisted[path] = offset
    if persisted:
        topics = sorted({stores[path][0] for path in persisted})
        ends = {(tp.topic, tp.partition): end for tp, end in
                (await log_ends(bootstrap, topics, per_partition=True)).items()}
        stale += [f"{path.name}: offset {offset}, changelog end {ends.get(stores[path], 0)}"
                  for path, offset in persisted.items() if offset >= ends.get(stores[path], 0)]
    return stale
