from quotacache.policy.freshness import CacheEntry, Freshness, classify
from quotacache.tables.inflight import InFlight


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


def test_inflight_claim_is_single_until_released_or_expired():
    marks = InFlight(timeout=30)
    assert marks.claim("k", now=0)
    assert not marks.claim("k", now=1)
    marks.release("k")
    assert marks.claim("k", now=2)
    assert not marks.claim("k", now=31.9)
    assert marks.claim("k", now=32.0)


def test_xfetch_refreshes_a_key_read_often_just_before_it_expires():
    import math

    from quotacache.policy.freshness import xfetch_due

    entry = CacheEntry(1, fetched_at=0.0, ttl=120)
    draws = [(i + 0.5) / 1000 for i in range(1000)]  # uniform over (0, 1)
    share = {age: sum(xfetch_due(entry, age, 2.0, 1.0, d) for d in draws) / len(draws)
             for age in (60, 110, 116, 119, 120)}
    assert share[60] == 0.0 and share[110] < 0.01
    assert abs(share[116] - math.exp(-2)) < 0.01 and abs(share[119] - math.exp(-0.5)) < 0.01
    assert share[120] == 1.0
