"""Per-endpoint counters and the figures of /stats."""

from collections import Counter

from quotacache.tables.stats import FIELDS, Stats, rates


def test_counts_add_up_per_endpoint():
    stats = Stats()
    stats.count("hits", "svc/ticker")
    stats.count("hits", "svc/ticker", 2)
    stats.count("hits", "svc/ratio")
    assert stats.by_endpoint["svc/ticker"]["hits"] == 3
    assert stats.by_endpoint["svc/ratio"]["hits"] == 1


def test_totals_sum_every_endpoint():
    stats = Stats()
    stats.count("misses", "svc/ticker")
    stats.count("misses", "svc/ratio", 4)
    stats.count("errors", "svc/ratio")
    assert stats.totals() == Counter({"misses": 5, "errors": 1})


def test_the_snapshot_shows_every_field_even_when_zero():
    snapshot = Stats().snapshot()
    assert all(snapshot[field] == 0 for field in FIELDS)
    assert snapshot["reads"] == 0 and snapshot["hit_rate"] is None
    assert snapshot["endpoints"] == {}


def test_the_hit_rate_counts_stale_answers_as_reads_but_not_hits():
    stats = Stats()
    stats.count("hits", "svc/ticker", 3)
    stats.count("misses", "svc/ticker")
    stats.count("stale_served", "svc/ratio", 2)
    snapshot = stats.snapshot()
    assert snapshot["reads"] == 6 and snapshot["hit_rate"] == 0.5


def test_the_hit_rate_is_rounded_to_four_places():
    assert rates({"hits": 1, "misses": 2, "stale_served": 0})["hit_rate"] == 0.3333


def test_the_snapshot_lists_endpoints_in_order_with_all_their_fields():
    stats = Stats()
    stats.count("upstream_calls", "svc/ticker")
    stats.count("calls_saved", "svc/coinlist", 2)
    endpoints = stats.snapshot()["endpoints"]
    assert list(endpoints) == ["svc/coinlist", "svc/ticker"]
    assert endpoints["svc/coinlist"]["calls_saved"] == 2
    assert set(endpoints["svc/ticker"]) == set(FIELDS)


def test_worker_wide_events_are_counted_apart_from_the_endpoints():
    stats = Stats()
    stats.count_event("volatility_signals")
    stats.count_event("volatility_signals")
    snapshot = stats.snapshot()
    assert snapshot["events"] == {"volatility_signals": 2}
    assert snapshot["endpoints"] == {}
