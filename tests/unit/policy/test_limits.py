"""The limiter's decision, against a clock the test controls."""

from collections import defaultdict

from hypothesis import example, given, settings
from hypothesis import strategies as st

from quotacache.policy.limits import Scope, allowance, counts_from, decide, frees_at, room
from quotacache.settings import RateLimit
from tests.windows import max_in_any_window

from .limits_model import SendTimes

SERVICE = ("svc", (RateLimit(calls=100, seconds=60), RateLimit(calls=20, seconds=10),
                   RateLimit(calls=10, seconds=5)))
ENDPOINT_LIMITS = (RateLimit(calls=10, seconds=60),)


def scopes_for(endpoint):
    return [Scope(*SERVICE), Scope(f"svc/{endpoint}", ENDPOINT_LIMITS)]


def attempt(sent, endpoint, now, headroom=0.0, jitter=0.25):
    scopes = scopes_for(endpoint)
    decision = decide(scopes, sent, now, headroom=headroom, jitter=jitter)
    if decision.allowed:
        sent.record(scopes, now)
    return decision


def assert_every_window_kept(arrivals):
    """No window of any limit, counted on arrival (scope -> arrival times), holds more
    calls than the limit."""
    for scope, times in arrivals.items():
        limits = SERVICE[1] if scope == "svc" else ENDPOINT_LIMITS
        for limit in limits:
            assert max_in_any_window(times, limit.seconds) <= limit.calls, (scope, str(limit))


def test_first_calls_are_allowed_up_to_the_tightest_limit():
    sent = SendTimes()
    allowed = [attempt(sent, f"e{i}", 1000.0 + i * 0.01).allowed for i in range(15)]
    assert allowed == [True] * 10 + [False] * 5


def test_blocked_decision_names_the_limit_and_when_room_returns_to_the_millisecond():
    sent = SendTimes()
    for i in range(10):
        attempt(sent, "ticker", 1000.0 + i * 0.1)
    decision = attempt(sent, "ticker", 1001.0)
    assert not decision.allowed
    assert decision.blocked_by == "svc/ticker 10/60"
    assert decision.wait == 1000.0 + 60 + 0.25 - 1001.0  # the oldest call leaves then
    assert not attempt(sent, "ticker", 1001.0 + decision.wait - 0.001).allowed
    assert attempt(sent, "ticker", 1001.0 + decision.wait).allowed


def test_a_limit_is_used_to_its_last_call_over_exactly_its_window_plus_jitter():
    sent = SendTimes()
    limit = Scope("svc", (RateLimit(calls=3, seconds=10),))
    times = [0.0, 0.5, 1.0]
    for t in times:
        assert decide([limit], sent, t, jitter=0.25).allowed
        sent.record([limit], t)
    assert not decide([limit], sent, 10.249, jitter=0.25).allowed  # 0.0 still counts
    assert decide([limit], sent, 10.25, jitter=0.25).allowed  # 10.25 s after the first


def test_headroom_keeps_a_margin_below_each_limit():
    assert allowance(RateLimit(calls=100, seconds=60), 0.1) == 90
    assert allowance(RateLimit(calls=5, seconds=10), 0.1) == 4
    assert allowance(RateLimit(calls=1, seconds=10), 0.5) == 1
    assert allowance(RateLimit(calls=10, seconds=10)) == 10


def test_room_and_the_times_slots_free_up():
    limit = RateLimit(calls=3, seconds=10)
    times = [100.0, 103.0]
    assert room(times, limit, 104.0, jitter=0.5) == 1
    assert frees_at(times, limit, 104.0, 0.5) == [110.5, 113.5]
    assert room(times, limit, 110.6, jitter=0.5) == 2


def test_one_blocked_scope_blocks_the_call_in_every_scope():
    sent = SendTimes()
    for i in range(10):
        attempt(sent, "ticker", 1000.0 + i)
    before = {scope: list(times) for scope, times in sent.sent.items()}
    assert not attempt(sent, "ticker", 1010.5).allowed
    assert dict(sent.sent) == before  # nothing recorded for a refused call


@settings(max_examples=300, deadline=None)
@given(
    attempts=st.lists(st.tuples(st.floats(min_value=0.0, max_value=3.0),
                                st.integers(min_value=0, max_value=4),
                                st.floats(min_value=0.0, max_value=1.0)),
                      min_size=1, max_size=400),
    headroom=st.sampled_from([0.0, 0.1]),
    jitter=st.sampled_from([0.0, 0.25, 1.0]),
    delay=st.floats(min_value=0.0, max_value=5.0),
)
def test_no_upstream_window_ever_sees_more_calls_than_a_limit(attempts, headroom, jitter,
                                                               delay):
    """Arbitrary decision sequences; each call arrives after a fixed delay plus up to
    ``jitter`` more (clock skew and network spread): no window of any limit, counted on
    arrival by the upstream, ever holds more calls than the limit."""
    sent = SendTimes()
    now = 1_000_000.0
    arrivals = defaultdict(list)
    for gap, endpoint_number, spread in attempts:
        now += gap
        endpoint = f"e{endpoint_number}"
        if attempt(sent, endpoint, now, headroom=headroom, jitter=jitter).allowed:
            arrival = now + delay + spread * jitter
            arrivals["svc"].append(arrival)
            arrivals[f"svc/{endpoint}"].append(arrival)
    assert_every_window_kept(arrivals)


#: A share of the jitter: often at either end, where a window is most crowded.
SHARE = st.one_of(st.sampled_from([0.0, 1.0]), st.floats(min_value=0.0, max_value=1.0))


@given(
    bursts=st.lists(st.tuples(st.floats(min_value=0.0, max_value=6.0),
                              st.integers(min_value=1, max_value=12),
                              st.integers(min_value=0, max_value=4), SHARE, SHARE,
                              st.one_of(st.just(0.0), st.floats(min_value=0.0,
                                                                max_value=2.0))),
                    min_size=1, max_size=60),
    jitter=st.sampled_from([0.0, 0.25, 1.0]),
    delay=st.floats(min_value=0.0, max_value=5.0),
)
@example(bursts=[(0.0, 10, 0, 0.0, 1.0, 0.0), (5.9, 1, 1, 0.0, 0.0, 0.0)], jitter=1.0,
         delay=0.0)  # a record moved even 0.1 s further back lets an 11th call in
@settings(max_examples=300, deadline=None)
def test_answered_calls_counted_from_a_jitter_before_their_answer_keep_every_window(
        bursts, jitter, delay):
    """Bursts of attempts at one instant; each call leaves up to half the jitter after
    its decision, arrives ``delay`` plus up to the other half after that, and is
    answered some time later. From its answer on, its record is ``counts_from``'s: no
    window of any limit, counted on arrival, ever holds more calls than the limit, and
    no record is ever later than its decision or earlier than its arrival less the
    delay and the jitter (the bound's premise)."""
    sent = SendTimes()
    now = 1_000_000.0
    unanswered = []  # (answered at, scopes' names, decided at, arrived at)
    arrivals = defaultdict(list)
    for gap, size, endpoint_number, wait, spread, answer in bursts:
        now += gap
        for call in [c for c in unanswered if c[0] <= now]:
            unanswered.remove(call)
            answered, names, decided, arrived = call
            moved = counts_from(decided, answered, jitter)
            assert arrived - delay - jitter <= moved <= decided
            for name in names:
                sent.sent[name].remove(decided)
                sent.sent[name].append(moved)
        endpoint = f"e{endpoint_number}"
        for _ in range(size):
            if attempt(sent, endpoint, now, jitter=jitter).allowed:
                arrival = now + wait * jitter / 2 + delay + spread * jitter / 2
                unanswered.append((arrival + answer, ("svc", f"svc/{endpoint}"), now,
                                   arrival))
                arrivals["svc"].append(arrival)
                arrivals[f"svc/{endpoint}"].append(arrival)
    assert_every_window_kept(arrivals)


def test_demand_far_above_the_budget_uses_all_of_it_but_never_more():
    sent = SendTimes()
    times = []
    now = 0.0
    for i in range(6000):  # 100 attempts a second for a minute, over 20 endpoints
        now += 0.01
        if attempt(sent, f"e{i % 20}", now).allowed:
            times.append(now)
    assert max_in_any_window(times, 5) <= 10
    assert max_in_any_window(times, 60) <= 100
    assert len(times) == 100  # the whole 100/60, not a call less
