"""A table store's persisted offset, read from a real RocksDB before Faust opens it."""

from __future__ import annotations

import pytest
from faust.stores.rocksdb import Store
from rocksdict import Options, Rdict

from quotacache.dev.persisted_offsets import persisted_offset


def store(path, **items: bytes) -> None:
    db = Rdict(str(path), options=Options(raw_mode=True))
    for key, value in items.items():
        db[key.encode() if key != "offset" else Store.offset_key] = value
    db.close()


def test_the_offset_faust_persisted_is_read_and_a_missing_store_has_none(tmp_path):
    store(tmp_path / "cache-0.db", offset=b"17", BTC=b"{}")
    store(tmp_path / "cache-1.db", BTC=b"{}")
    assert persisted_offset(tmp_path / "cache-0.db") == 17
    assert persisted_offset(tmp_path / "cache-1.db") is None
    assert persisted_offset(tmp_path / "cache-2.db") is None


def test_a_store_rocksdb_cannot_open_raises(tmp_path):
    (tmp_path / "cache-0.db").mkdir()
    (tmp_path / "cache-0.db" / "CURRENT").write_text("garbage\n")
    with pytest.raises(Exception):  # noqa: B017 - rocksdict raises a plain Exception
        persisted_offset(tmp_path / "cache-0.db")
