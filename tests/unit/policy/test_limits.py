"""The limiter's decision, against a clock the test controls."""

from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quotacache.policy.limits import Scope, allowance, decide, endpoint_share
from quotacache.settings import RateLimit
from tests.windows import max_in_any_window

from .limits_model import Buckets

SERVICE = ("svc", (RateLimit(calls=100, seconds=60), RateLimit(calls=20, seconds=10),
                   RateLimit(calls=10, seconds=5)))
ENDPOINT_LIMITS = (RateLimit(calls=10, seconds=60),)


def scopes_for(endpoint):
    return [Scope(*SERVICE), Scope(f"svc/{endpoint}", ENDPOINT_LIMITS)]


def attempt(buckets, endpoint, now, headroom=0.0, skew=0.25):
    scopes = scopes_for(endpoint)
    decision = decide(scopes, buckets, now, headroom=headroom, skew=skew)
    if decision.allowed:
        buckets.record(scopes, now)
    return decision


def test_first_calls_are_allowed_up_to_the_tightest_limit():
    buckets = Buckets()
    allowed = [attempt(buckets, f"e{i}", 1000.0 + i * 0.01).allowed for i in range(15)]
    assert allowed == [True] * 10 + [False] * 5


def test_blocked_decision_names_the_limit_and_when_room_returns():
    buckets = Buckets()
    for i in range(10):
        attempt(buckets, "ticker", 1000.0 + i * 0.1)
    decision = attempt(buckets, "ticker", 1001.0)
    assert not decision.allowed
    assert decision.blocked_by == "svc/ticker 10/60"
    assert 60 < decision.wait <= 61.3
    assert not attempt(buckets, "ticker", 1001.0 + decision.wait - 0.01).allowed
    assert attempt(buckets, "ticker", 1001.0 + decision.wait).allowed


def test_headroom_keeps_a_margin_below_each_limit():
    assert allowance(RateLimit(calls=100, seconds=60), 0.1) == 90
    assert allowance(RateLimit(calls=5, seconds=10), 0.1) == 4
    assert allowance(RateLimit(calls=1, seconds=10), 0.5) == 1


def test_an_endpoint_scope_with_its_own_share_overrides_the_decision_share():
    """A high-priority endpoint may use its own limit fully; the service keeps a reserve."""
    service = Scope("svc", (RateLimit(calls=100, seconds=60),))
    endpoint = Scope("svc/ls_ratio", (RateLimit(calls=10, seconds=60),), share=1.0)
    buckets = Buckets()
    allowed = 0
    for i in range(12):
        decision = decide([service, endpoint], buckets, 1000.0 + i, headroom=0.0, share=0.6)
        if decision.allowed:
            buckets.record([service, endpoint], 1000.0 + i)
            allowed += 1
    assert allowed == 10  # not 6: the endpoint's own share is used for its limit
    busy = Scope("svc", (RateLimit(calls=10, seconds=60),))
    assert decide([busy], lambda scope, second: 6 if second == 1000 else 0, 1000.5,
                  headroom=0.0, share=0.6).blocked_by == "svc 10/60"
    assert decide([busy], lambda scope, second: 6 if second == 1000 else 0, 1000.5,
                  headroom=0.0, share=1.0).allowed


def test_below_its_endpoints_priority_a_call_keeps_a_reserve_in_the_endpoint_limits():
    shares = {"critical": 1.0, "high": 0.6, "medium": 0.4, "low": 0.2}
    assert endpoint_share(shares, "high", "high") == 1.0
    assert endpoint_share(shares, "critical", "high") == 1.0
    assert endpoint_share(shares, "low", "critical") == 0.2
    assert endpoint_share(shares, "low", "high") == pytest.approx(1 / 3)


def test_one_blocked_scope_blocks_the_call_in_every_scope():
    buckets = Buckets()
    for i in range(10):
        attempt(buckets, "ticker", 1000.0 + i)
    def recorded():
        return {key: n for key, n in buckets.counts.items() if n}

    before = recorded()
    assert not attempt(buckets, "ticker", 1010.5).allowed
    assert recorded() == before  # nothing counted for a refused call


@settings(max_examples=200, deadline=None)
@given(
    attempts=st.lists(st.tuples(st.floats(min_value=0.0, max_value=3.0),
                                st.integers(min_value=0, max_value=4),
                                st.floats(min_value=0.0, max_value=0.25)),
                      min_size=1, max_size=400),
    headroom=st.sampled_from([0.0, 0.1]),
)
def test_no_window_of_any_limit_ever_sees_more_calls_than_allowed(attempts, headroom):
    buckets = Buckets()
    now = 1_000_000.0
    arrivals = defaultdict(list)  # scope -> upstream arrival times (decision + jitter)
    for gap, endpoint_number, jitter in attempts:
        now += gap
        endpoint = f"e{endpoint_number}"
        if attempt(buckets, endpoint, now, headroom=headroom).allowed:
            arrivals["svc"].append(now + jitter)
            arrivals[f"svc/{endpoint}"].append(now + jitter)
    for scope, times in arrivals.items():
        limits = SERVICE[1] if scope == "svc" else ENDPOINT_LIMITS
        for limit in limits:
            assert max_in_any_window(times, limit.seconds) <= limit.calls, (scope, str(limit))


def test_demand_far_above_the_budget_uses_it_but_never_exceeds_it():
    buckets = Buckets()
    times = []
    now = 0.0
    for i in range(6000):  # 100 attempts a second for a minute, over 20 endpoints
        now += 0.01
        if attempt(buckets, f"e{i % 20}", now).allowed:
            times.append(now)
    assert max_in_any_window(times, 5) <= 10
    assert max_in_any_window(times, 60) <= 100
    assert len(times) >= 90  # the budget is spent, not wasted
