from quotacache.policy.freshness import CacheEntry, Freshness, classify


def test_entry_inside_ttl_is_a_hit():
    entry = CacheEntry({"p": 1}, fetched_at=1000.0, ttl=120)
    assert classify(entry, 1119.9, max_staleness=3600) is Freshness.HIT


def test_entry_past_ttl_is_stale_until_max_staleness_then_a_miss():
    entry = CacheEntry({"p": 1}, fetched_at=1000.0, ttl=120)
    assert classify(entry, 1120.0, max_staleness=3600) is Freshness.STALE
    assert classify(entry, 4599.0, max_staleness=3600) is Freshness.STALE
    assert classify(entry, 4600.0, max_staleness=3600) is Freshness.MISS


def test_no_entry_is_a_miss():
    assert classify(None, 0.0, max_staleness=10) is Freshness.MISS


def test_max_age_tightens_freshness():
    entry = CacheEntry(1, fetched_at=0.0, ttl=120)
    assert classify(entry, 30.0, 3600, max_age=20) is Freshness.STALE
    assert classify(entry, 10.0, 3600, max_age=20) is Freshness.HIT


def test_round_trip_through_the_table_format():
    entry = CacheEntry([1, 2], fetched_at=5.0, ttl=60.0)
    assert CacheEntry.from_dict(entry.to_dict()) == entry
