"""Queue, service health and call selection, against a clock the test controls."""

from email.utils import formatdate

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from quotacache.agents.fetch import rate_hint, retry_delay
from quotacache.policy.dispatch import select_calls
from quotacache.policy.health import Breaker, ServiceHealth
from quotacache.policy.queue import FetchQueue
from quotacache.settings import Priority, RateLimit
from quotacache.streams.records import FetchOrder
from tests.windows import max_in_any_window

from .limits_model import MemoryBudget

LIMITS = [RateLimit(calls=20, seconds=10), RateLimit(calls=10, seconds=5)]
ENDPOINT_LIMITS = [RateLimit(calls=4, seconds=10)]
ENDPOINTS = {"ticker": Priority.CRITICAL, "ls_ratio": Priority.HIGH,
             "ai_screener": Priority.MEDIUM, "coinlist": Priority.LOW}


def order(endpoint, symbol="BTC", at=0.0, priority=None):
    return FetchOrder(service="svc", endpoint=endpoint, symbol=symbol,
                      priority=priority or ENDPOINTS.get(endpoint, Priority.MEDIUM),
                      reason="request", requested_at=at)


def enqueue(queue, o):
    queue.add(o.key, o)


def select(queue, health, budget, now, free_slots=8):
    return select_calls(queue, health, budget, now, service="svc", cooldown=30,
                        free_slots=free_slots)


# -- queue -----------------------------------------------------------------------------

def test_queue_serves_priority_then_age_and_merges_duplicates():
    queue = FetchQueue()
    enqueue(queue, order("coinlist", at=1))
    enqueue(queue, order("ls_ratio", at=2))
    enqueue(queue, order("ticker", "ETH", at=3))
    enqueue(queue, order("ticker", "BTC", at=4))
    enqueue(queue, order("coinlist", at=5, priority=Priority.CRITICAL))  # merged, raised
    assert len(queue) == 4
    keys = [q.key for q in queue.in_order()]
    assert keys == ["svc/coinlist/BTC", "svc/ticker/ETH", "svc/ticker/BTC", "svc/ls_ratio/BTC"]
    assert queue.in_order()[0].requested_at == 1  # the merged entry keeps its first age
    assert queue.by_priority() == {"critical": 3, "high": 1, "medium": 0, "low": 0}


def test_queue_drops_what_would_be_stale_and_pushes_out_the_least_important():
    queue = FetchQueue(limit=2)
    enqueue(queue, order("ticker", at=0))
    enqueue(queue, order("coinlist", at=0))
    pushed = queue.add("svc/ls_ratio/BTC", order("ls_ratio", at=1))
    assert pushed.endpoint == "coinlist"
    dropped = queue.drop_expired(now=121, ttl_of={"ticker": 120, "ls_ratio": 300})
    assert [o.endpoint for o in dropped] == ["ticker"] and len(queue) == 1


# -- health ----------------------------------------------------------------------------

def test_429_pauses_the_service_until_retry_after():
    health = ServiceHealth()
    health.on_rate_limited(now=100, retry_after=7, default=60)
    assert health.admits(106.9, cooldown=30)[0] is False
    assert health.admits(107.0, cooldown=30)[0] is True
    health.on_rate_limited(now=200, retry_after=None, default=60)
    assert health.admits(259, cooldown=30)[0] is False


def test_breaker_opens_after_failures_half_opens_after_cooldown_and_closes_on_success():
    health = ServiceHealth()
    for i in range(5):
        assert health.admits(i, cooldown=30)[0]
        health.on_failure(now=i, threshold=5)
    assert health.breaker_state(4, 30) is Breaker.OPEN and not health.admits(33.9, 30)[0]
    assert health.breaker_state(34, 30) is Breaker.HALF_OPEN and health.admits(34, 30)[0]
    health.on_call(34, 30)
    assert not health.admits(34.5, 30)[0]  # one trial at a time
    health.on_failure(now=35, threshold=5)
    assert health.breaker_state(36, 30) is Breaker.OPEN  # the trial failed: open again
    health.on_call(65, 30)
    health.on_success()
    assert health.breaker_state(65, 30) is Breaker.CLOSED and health.admits(65, 30)[0]


def test_upstream_hints_stop_calls_until_reset():
    health = ServiceHealth()
    health.on_hint(remaining=1, reset_at=50)
    assert health.admits(10, 30)[0]
    health.on_call(10, 30)
    assert not health.admits(11, 30)[0]
    assert health.admits(50, 30)[0]


def test_rate_hints_and_retry_delays():
    headers = httpx.Headers({"X-RateLimit-Remaining": "3", "X-RateLimit-Reset": "20"})
    assert rate_hint(headers, now=100) == {"remaining": 3, "reset_at": 120, "limit": None}
    epoch = httpx.Headers({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1800000000"})
    assert rate_hint(epoch, now=100)["reset_at"] == 1_800_000_000
    assert rate_hint(httpx.Headers({"X-RateLimit-Remaining": "x"}), now=0) is None
    delays = [retry_delay(attempt, base=0.5, cap=4) for attempt in range(8) for _ in range(50)]
    assert all(0 <= d <= 4 for d in delays) and max(delays) > 2


def test_retry_after_as_http_date_reaches_the_pause():
    from quotacache.upstream.client import parse_retry_after

    health = ServiceHealth()
    health.on_rate_limited(1000, parse_retry_after(formatdate(1030, usegmt=True), 1000), 60)
    assert not health.admits(1029, 30)[0] and health.admits(1030, 30)[0]


# -- selection -------------------------------------------------------------------------

def test_a_busy_endpoint_does_not_hold_back_the_others():
    budget = MemoryBudget("svc", LIMITS, ENDPOINT_LIMITS, headroom=0)
    queue = FetchQueue()
    for i in range(6):
        enqueue(queue, order("ticker", f"S{i}", at=i))
    enqueue(queue, order("coinlist", at=10))
    chosen = select(queue, ServiceHealth(), budget, now=100)
    assert [q.order.endpoint for q in chosen.calls] == ["ticker"] * 4 + ["coinlist"]


def test_selection_stops_at_a_pause_and_at_free_slots():
    budget = MemoryBudget("svc", LIMITS, ENDPOINT_LIMITS)
    queue = FetchQueue()
    for endpoint in ENDPOINTS:
        enqueue(queue, order(endpoint))
    paused = ServiceHealth(paused_until=200, pause_reason="429")
    assert select(queue, paused, budget, now=100).calls == []
    assert len(select(queue, ServiceHealth(), budget, now=100, free_slots=2).calls) == 2


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(st.tuples(
    st.floats(min_value=0, max_value=2),                      # time to the next step
    st.sampled_from(sorted(ENDPOINTS)), st.integers(0, 5),    # what is asked
    st.sampled_from(["ok", "ok", "ok", "fail", "429"]),       # how the next call ends
    st.floats(min_value=0, max_value=6),                      # Retry-After of a 429
    st.floats(min_value=0, max_value=0.25)),                  # arrival jitter
    min_size=1, max_size=300))
def test_random_demand_failures_and_429s_never_exceed_a_limit_or_call_while_paused(steps):
    budget = MemoryBudget("svc", LIMITS, ENDPOINT_LIMITS)
    queue, health = FetchQueue(), ServiceHealth()
    now, calls, pauses = 0.0, [], []
    for gap, endpoint, symbol, outcome, retry_after, jitter in steps:
        now += gap
        enqueue(queue, order(endpoint, f"S{symbol}", at=now))
        chosen = select(queue, health, budget, now).calls
        # Calls chosen together go out together; a 429 is known only after they return.
        assert not chosen or not any(start <= now < end for start, end in pauses)
        for queued in chosen:
            queue.remove(queued.key)
            calls.append((now + jitter, queued.order.endpoint))
            if outcome == "ok":
                health.on_success()
            elif outcome == "fail":
                health.on_failure(now, threshold=3)
            else:
                health.on_rate_limited(now, retry_after, default=60)
                pauses.append((now, now + retry_after))
    times = [t for t, _ in calls]
    for limit in LIMITS:
        assert max_in_any_window(times, limit.seconds) <= limit.calls
    for endpoint in ENDPOINTS:
        own = [t for t, e in calls if e == endpoint]
        assert max_in_any_window(own, ENDPOINT_LIMITS[0].seconds) <= ENDPOINT_LIMITS[0].calls


def test_full_queue_is_served_at_the_budget_rate_not_beyond():
    budget = MemoryBudget("svc", LIMITS, [RateLimit(calls=100, seconds=10)])
    queue, health = FetchQueue(), ServiceHealth()
    for i in range(200):
        enqueue(queue, order("ticker", f"S{i}"))
    times = []
    now = 0.0
    while now < 60:
        for queued in select(queue, health, budget, now).calls:
            queue.remove(queued.key)
            times.append(now)
        now += 0.1
    assert max_in_any_window(times, 5) <= 10 and max_in_any_window(times, 10) <= 20
    assert len(times) >= 85  # 18 per ~11 s (10 % headroom, whole-second buckets)


def test_low_priorities_leave_the_rest_of_each_window_to_critical_ones():
    shares = {"critical": 1.0, "high": 0.8, "medium": 0.6, "low": 0.4}
    budget = MemoryBudget("svc", [RateLimit(calls=10, seconds=60)],
                          [RateLimit(calls=100, seconds=60)], headroom=0, shares=shares)
    queue, health = FetchQueue(), ServiceHealth()
    for i in range(20):
        enqueue(queue, order("coinlist", f"L{i}", at=0))
    low = select(queue, health, budget, now=0, free_slots=100).calls
    assert len(low) == 4  # 40 % of the window
    for queued in low:
        queue.remove(queued.key)
    for i in range(10):
        enqueue(queue, order("ticker", f"C{i}", at=1))
    critical = select(queue, health, budget, now=1, free_slots=100).calls
    assert [q.order.endpoint for q in critical] == ["ticker"] * 6  # the reserved rest


def test_the_upstreams_remaining_calls_are_kept_for_higher_priorities():
    health = ServiceHealth()
    health.on_hint(remaining=3, reset_at=100, limit=10)
    assert health.admits(50, 30, share=1.0)[0]  # critical may use the last three
    assert not health.admits(50, 30, share=0.6)[0]  # high keeps 4 of 10 free: 3 < 4
    assert health.admits(100, 30, share=0.2)[0]  # after the reset, anyone
