"""The cache table wrapper: entries by key, and the freshness summary of /stats."""

import pytest

from quotacache.policy.freshness import CacheEntry
from quotacache.tables.cache import CacheTable


@pytest.fixture
def cache(app):
    return CacheTable(app, partitions=2)


async def put(in_stream, cache, key, entry, partition=0):
    await in_stream(lambda: cache.put(key, entry), partition=partition)


def test_a_key_never_written_reads_as_none(cache):
    assert cache.get("svc/ticker/BTC") is None


async def test_an_entry_reads_back_as_written(cache, in_stream):
    await put(in_stream, cache, "svc/ticker/BTC", CacheEntry({"p": [1, 2]}, 1000.0, 60.0))
    assert cache.get("svc/ticker/BTC") == CacheEntry({"p": [1, 2]}, 1000.0, 60.0)


async def test_a_later_write_replaces_the_entry(cache, in_stream):
    await put(in_stream, cache, "k", CacheEntry(1, 1000.0, 60.0))
    await put(in_stream, cache, "k", CacheEntry(2, 1010.0, 60.0))
    assert cache.get("k").data == 2


async def test_a_deleted_entry_is_gone(cache, in_stream):
    await put(in_stream, cache, "k", CacheEntry(1, 1000.0, 60.0))
    await in_stream(lambda: cache.delete("k"))
    assert cache.get("k") is None and len(cache) == 0


async def test_deleting_a_missing_key_is_harmless(cache, in_stream):
    await in_stream(lambda: cache.delete("never/was/here"))
    assert cache.get("never/was/here") is None


async def test_items_are_every_entry_of_every_partition(cache, in_stream):
    await put(in_stream, cache, "a/b/X", CacheEntry(1, 1.0, 5.0), partition=0)
    await put(in_stream, cache, "a/b/Y", CacheEntry(2, 2.0, 5.0), partition=1)
    assert dict(cache.items()) == {"a/b/X": CacheEntry(1, 1.0, 5.0),
                                   "a/b/Y": CacheEntry(2, 2.0, 5.0)}
    assert len(cache) == 2


async def test_freshness_counts_fresh_and_stale_entries_per_endpoint(cache, in_stream):
    await put(in_stream, cache, "svc/ticker/BTC", CacheEntry(1, 1000.0, 60.0))
    await put(in_stream, cache, "svc/ticker/ETH", CacheEntry(1, 900.0, 60.0))
    await put(in_stream, cache, "svc/ratio/BTC", CacheEntry(1, 1000.0, 600.0))
    assert cache.freshness(now=1030.04) == {
        "svc/ticker": {"entries": 2, "fresh": 1, "stale": 1, "oldest_age": 130.0},
        "svc/ratio": {"entries": 1, "fresh": 1, "stale": 0, "oldest_age": 30.0},
    }


async def test_freshness_is_computed_at_most_once_a_second(cache, in_stream):
    await put(in_stream, cache, "svc/ticker/BTC", CacheEntry(1, 1000.0, 60.0))
    first = cache.freshness(now=1010.0)
    await put(in_stream, cache, "svc/ticker/ETH", CacheEntry(1, 1000.0, 60.0))
    assert cache.freshness(now=1010.9) == first
    assert cache.freshness(now=1011.0)["svc/ticker"]["entries"] == 2


async def test_freshness_is_computed_again_when_the_clock_goes_back(cache, in_stream):
    await put(in_stream, cache, "svc/ticker/BTC", CacheEntry(1, 1000.0, 60.0))
    cache.freshness(now=1010.0)
    await put(in_stream, cache, "svc/ticker/ETH", CacheEntry(1, 1000.0, 60.0))
    assert cache.freshness(now=1009.5)["svc/ticker"]["entries"] == 2


def test_an_empty_cache_has_an_empty_summary(cache):
    assert cache.freshness(now=0.0) == {}
