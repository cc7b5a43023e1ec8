"""Upstream policy: backoff of retries, the upstream's rate hints, fan-out of list answers."""

from email.utils import formatdate

import httpx
import pytest

from quotacache.policy.upstream import (
    MAX_RETRY_AFTER,
    fan_out,
    parse_retry_after,
    rate_hint,
    retry_delay,
)


def test_the_backoff_bound_doubles_per_attempt_up_to_the_cap():
    highest = [retry_delay(a, base=0.5, cap=4, uniform=lambda lo, hi: hi) for a in range(6)]
    assert highest == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_full_jitter_may_retry_at_once():
    assert retry_delay(3, base=0.5, cap=4, uniform=lambda lo, hi: lo) == 0.0


def test_the_upstreams_limit_rides_with_its_hint():
    headers = httpx.Headers({"X-RateLimit-Remaining": "3", "X-RateLimit-Reset": "20",
                             "X-RateLimit-Limit": "100"})
    assert rate_hint(headers, now=100) == {"remaining": 3, "reset_at": 120, "limit": 100}


NOW = 1_795_733_580.0  # epoch seconds


@pytest.mark.parametrize("reset, reset_at", [
    ("5", NOW + 5),  # seconds from now
    (str(NOW + 5), NOW + 5),  # epoch seconds
    (str(int((NOW + 5) * 1000)), NOW + 5),  # epoch milliseconds: not 55,000 years away
    ("1e300", NOW + MAX_RETRY_AFTER),  # a reset past a day is a day
    ("31536000", NOW + MAX_RETRY_AFTER),
    ("-5", NOW),
])
def test_a_hints_reset_is_read_in_any_unit_and_never_further_than_a_day(reset, reset_at):
    headers = httpx.Headers({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset})
    assert rate_hint(headers, now=NOW)["reset_at"] == pytest.approx(reset_at)


@pytest.mark.parametrize("reset", ["inf", "nan", "-inf", "soon"])
def test_a_reset_that_is_no_time_is_no_hint(reset):
    headers = httpx.Headers({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset})
    assert rate_hint(headers, now=NOW) is None


def test_no_hint_without_both_remaining_and_reset():
    assert rate_hint(httpx.Headers({"X-RateLimit-Remaining": "3"}), now=0) is None
    assert rate_hint(httpx.Headers({"X-RateLimit-Reset": "3"}), now=0) is None
    assert rate_hint(httpx.Headers({}), now=0) is None


def test_a_non_list_answer_fills_only_its_own_entry():
    assert fan_out("*", {"symbol": "BTC"}, "symbol") == [("*", {"symbol": "BTC"})]


def test_an_endpoint_without_a_fan_out_field_fills_only_its_own_entry():
    assert fan_out("*", [{"symbol": "BTC"}], None) == [("*", [{"symbol": "BTC"}])]


def test_a_list_answer_fills_each_listed_symbols_entry_upper_cased():
    items = [{"symbol": "btc", "p": 1}, {"symbol": "ETH", "p": 2}]
    assert fan_out("*", items, "symbol") == [("*", items), ("BTC", items[0]), ("ETH", items[1])]


def test_items_without_a_valid_symbol_are_kept_only_in_the_whole_list():
    items = [{"p": 1}, {"symbol": "../x"}, {"symbol": 7}, "text", None, {"symbol": "SOL"}]
    assert fan_out("*", items, "symbol") == [("*", items), ("SOL", items[5])]


def test_retry_after_as_seconds_or_http_date():
    assert parse_retry_after("12", now=0) == 12
    assert parse_retry_after(formatdate(1_000_030, usegmt=True), now=1_000_000) == 30
    assert parse_retry_after("garbage", now=0) is None
    assert parse_retry_after(None, now=0) is None


def test_a_retry_after_of_never_is_a_day_and_garbage_is_nothing():
    assert parse_retry_after("inf", now=0) == MAX_RETRY_AFTER
    assert parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now=0) == MAX_RETRY_AFTER
    assert parse_retry_after("nan", now=0) is None
    assert parse_retry_after("-5", now=0) == 0
