"""Call selection: what a call buys, eligibility, reservation, and the limits, against a
clock the test controls."""

from bisect import insort

from hypothesis import given, settings
from hypothesis import strategies as st

from quotacache.policy.dispatch import Valuation, _room_kept, select_calls
from quotacache.policy.health import ServiceHealth
from quotacache.policy.queue import FetchQueue
from quotacache.settings import Priority, RateLimit
from quotacache.streams.records import FetchOrder
from tests.windows import max_in_any_window

from .limits_model import MemoryBudget

LIMITS = [RateLimit(calls=20, seconds=10), RateLimit(calls=10, seconds=5)]
ENDPOINT_LIMITS = [RateLimit(calls=4, seconds=10)]
ENDPOINTS = {"ticker": Priority.CRITICAL, "ls_ratio": Priority.HIGH,
             "ai_screener": Priority.MEDIUM, "coinlist": Priority.LOW}
TTLS = {"ticker": 24.0, "ls_ratio": 60.0, "ai_screener": 360.0, "coinlist": 600.0}
FLAT = {"critical": 1.0, "high": 1.0, "medium": 1.0, "low": 1.0}


def order(endpoint, symbol="BTC", at=0.0, rate=0.0, fresh_until=None, force=False,
          reason="read"):
    return FetchOrder(service="svc", endpoint=endpoint, symbol=symbol,
                      priority=ENDPOINTS.get(endpoint, Priority.MEDIUM), reason=reason,
                      requested_at=at, rate=rate, fresh_until=fresh_until, force=force)


def enqueue(queue, o):
    queue.add(o.key, o)


def select(queue, health, budget, now, free_slots=8, weights=FLAT, latency=0.5):
    return select_calls(queue, health, budget, now, service="svc", cooldown=30,
                        free_slots=free_slots,
                        valuation=Valuation(ttl_of=TTLS, weights=weights, latency=latency))


def keys(selection):
    return [q.key for q in selection.calls]


def test_a_busy_endpoint_does_not_hold_back_the_others():
    budget = MemoryBudget("svc", LIMITS, ENDPOINT_LIMITS)
    queue = FetchQueue()
    for i in range(6):
        enqueue(queue, order("ticker", f"S{i}", at=i, rate=1.0))
    enqueue(queue, order("coinlist", at=10, rate=0.01))
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


def test_the_key_read_most_gets_the_only_slot():
    budget = MemoryBudget("svc", LIMITS, [RateLimit(calls=1, seconds=60)])
    queue = FetchQueue()
    enqueue(queue, order("ticker", "QUIET", rate=0.01))
    enqueue(queue, order("ticker", "BUSY", rate=2.0))
    enqueue(queue, order("ticker", "MIDDLE", rate=0.5))
    assert keys(select(queue, ServiceHealth(), budget, now=1)) == ["svc/ticker/BUSY"]


def test_priority_weights_rank_critical_reads_above_others():
    def one_slot():
        return MemoryBudget("svc", [RateLimit(calls=1, seconds=60)], ENDPOINT_LIMITS)

    queue = FetchQueue()
    enqueue(queue, order("ls_ratio", rate=0.3))   # 0.3 x 60 s = 18 reads, weight 1
    enqueue(queue, order("ticker", rate=0.5))     # 0.5 x 24 s = 12 reads, weight 4
    weights = {"critical": 4.0, "high": 1.0, "medium": 1.0, "low": 1.0}
    assert keys(select(queue, ServiceHealth(), one_slot(), 1, weights=weights)) == [
        "svc/ticker/BTC"]
    assert keys(select(queue, ServiceHealth(), one_slot(), 1)) == ["svc/ls_ratio/BTC"]


def test_a_fresh_key_is_not_called_until_its_data_is_about_to_expire():
    budget = MemoryBudget("svc", LIMITS, ENDPOINT_LIMITS)
    queue = FetchQueue()
    enqueue(queue, order("ticker", rate=5.0, fresh_until=100.0, reason="planned"))
    # Latency 0.5 s plus a twentieth of the 24 s TTL: eligible 1.7 s before expiry.
    assert select(queue, ServiceHealth(), budget, now=98.29).calls == []
    assert keys(select(queue, ServiceHealth(), budget, now=98.3)) == ["svc/ticker/BTC"]


def test_force_calls_a_fresh_key():
    budget = MemoryBudget("svc", LIMITS, ENDPOINT_LIMITS)
    queue = FetchQueue()
    enqueue(queue, order("ticker", fresh_until=100.0, force=True))
    assert keys(select(queue, ServiceHealth(), budget, now=50)) == ["svc/ticker/BTC"]


def test_a_slot_a_busier_planned_refresh_needs_is_kept_for_it():
    """Two slots left in the window; two busy keys expire within it. A key read once
    must wait, though the limit has room now: its call would take a slot they need."""
    budget = MemoryBudget("svc", [RateLimit(calls=4, seconds=60)], [])
    budget.record("ticker", 0.0)
    budget.record("ticker", 0.0)
    queue = FetchQueue()
    enqueue(queue, order("ticker", "A", rate=3.0, fresh_until=20.0, reason="planned"))
    enqueue(queue, order("ticker", "B", rate=3.0, fresh_until=30.0, reason="planned"))
    enqueue(queue, order("ticker", "ONCE", at=10.0, rate=0.01))
    assert select(queue, ServiceHealth(), budget, now=10.0).calls == []
    assert keys(select(queue, ServiceHealth(), budget, now=19.5)) == ["svc/ticker/A"]


def test_a_slot_is_kept_only_for_a_refresh_worth_several_times_the_call_now():
    """A planned refresh is a forecast: a read key whose call is worth half of it takes
    the last slot; against one worth ``reserve_above`` times more, it waits. A critical
    refresh keeps its slot against any call worth less."""
    def last_slot_goes_to(endpoint, planned_rate):
        budget = MemoryBudget("svc", [RateLimit(calls=1, seconds=60)], [])
        queue = FetchQueue()
        enqueue(queue, order(endpoint, "BUSY", rate=planned_rate, fresh_until=20.0,
                             reason="planned"))
        enqueue(queue, order(endpoint, "NOW", at=10.0, rate=1.0))
        return keys(select(queue, ServiceHealth(), budget, now=10.0))

    # Worth about twice the call now when due (rate 2 against 1, faded, aged): not kept.
    assert last_slot_goes_to("ls_ratio", 2.0) == ["svc/ls_ratio/NOW"]
    assert last_slot_goes_to("ls_ratio", 2.0 * Valuation(ttl_of=TTLS).reserve_above) == []
    assert last_slot_goes_to("ticker", 2.0) == []  # critical


def test_a_refresh_due_as_its_own_call_leaves_the_window_does_not_idle_a_second_slot():
    """BUSY's refresh falls due a few seconds before its own call of t=0 leaves the
    window. Waiting those seconds for that slot costs less than keeping the last one
    idle for a whole window, so a key read now takes it (``slack``); a critical refresh
    keeps its slot all the same."""
    def last_slot_taken(endpoint, slack):
        budget = MemoryBudget("svc", [RateLimit(calls=2, seconds=60)], [])
        budget.record(endpoint, 0.0)
        queue = FetchQueue()
        enqueue(queue, order(endpoint, "BUSY", rate=3.0, fresh_until=60.5,
                             reason="planned"))
        enqueue(queue, order(endpoint, "NOW", at=10.0, rate=0.2))
        valuation = Valuation(ttl_of=TTLS, weights=FLAT, slack=slack)
        chosen = select_calls(queue, ServiceHealth(), budget, 10.0, service="svc",
                              cooldown=30, free_slots=8, valuation=valuation)
        return keys(chosen)

    default = Valuation(ttl_of=TTLS).slack
    assert last_slot_taken("ls_ratio", default) == ["svc/ls_ratio/NOW"]
    assert last_slot_taken("ls_ratio", 0.0) == []
    assert last_slot_taken("ticker", default) == []  # critical


def test_when_slots_free_up_before_the_busy_keys_are_due_nothing_is_held_back():
    budget = MemoryBudget("svc", [RateLimit(calls=2, seconds=10)], [])
    budget.record("ticker", 0.0)
    queue = FetchQueue()
    enqueue(queue, order("ticker", "A", rate=3.0, fresh_until=20.0, reason="planned"))
    enqueue(queue, order("ticker", "ONCE", at=5.0, rate=0.01))
    # The slot taken at 0 frees at 10.25, before A is due: ONCE may go now.
    assert keys(select(queue, ServiceHealth(), budget, now=5.0)) == ["svc/ticker/ONCE"]


def test_a_low_priority_request_on_a_half_idle_service_is_fetched_at_once():
    budget = MemoryBudget("svc", [RateLimit(calls=30, seconds=60)],
                          [RateLimit(calls=10, seconds=60)])
    queue = FetchQueue()
    for i in range(5):  # half the budget in use by busy critical keys
        for _ in range(3):
            budget.record("ticker", float(i))
    enqueue(queue, order("coinlist", "RARE", at=10.0, rate=0.0))
    weights = {"critical": 4.0, "high": 2.0, "medium": 1.0, "low": 1.0}
    assert keys(select(queue, ServiceHealth(), budget, 10.0, weights=weights)) == [
        "svc/coinlist/RARE"]


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(st.tuples(
    st.floats(min_value=0, max_value=2),                      # time to the next step
    st.sampled_from(sorted(ENDPOINTS)), st.integers(0, 5),    # what is asked
    st.floats(min_value=0, max_value=3),                      # its read rate
    st.sampled_from(["ok", "ok", "ok", "fail", "429"]),       # how the next call ends
    st.floats(min_value=0, max_value=6),                      # Retry-After of a 429
    st.floats(min_value=0, max_value=0.25)),                  # arrival jitter
    min_size=1, max_size=300))
def test_random_demand_failures_and_429s_never_exceed_a_limit_or_call_while_paused(steps):
    budget = MemoryBudget("svc", LIMITS, ENDPOINT_LIMITS)
    queue, health = FetchQueue(), ServiceHealth()
    now, calls, pauses = 0.0, [], []
    for gap, endpoint, symbol, rate, outcome, retry_after, jitter in steps:
        now += gap
        enqueue(queue, order(endpoint, f"S{symbol}", at=now, rate=rate))
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


def test_a_full_queue_is_served_at_the_whole_budget_rate_not_beyond():
    budget = MemoryBudget("svc", LIMITS, [RateLimit(calls=100, seconds=10)])
    queue, health = FetchQueue(), ServiceHealth()
    for i in range(200):
        enqueue(queue, order("ticker", f"S{i}", rate=1.0))
    times = []
    now = 0.0
    while now < 60:
        for queued in select(queue, health, budget, now).calls:
            queue.remove(queued.key)
            times.append(now)
        now += 0.05
    assert max_in_any_window(times, 5) <= 10 and max_in_any_window(times, 10) <= 20
    assert len(times) >= 115  # 10 per 5.25 s: the whole budget, no headroom


def greedy(queue, health, budget, now, free_slots, valuation, waiting=lambda key: 0):
    """The selection without its shortcuts: every eligible key, highest rank first (its
    value and its waiting readers), asks health, free slots, the limits and the kept room
    (judged on its value alone) for itself."""
    entries = queue.entries()
    ready = sorted((q for q in entries if valuation.eligible(q, now)),
                   key=lambda q: valuation.value(q, now)
                   + valuation.waiting_value(q, waiting(q.key)), reverse=True)
    planned = sorted((valuation.planned(valuation.due(q), valuation.value(q, valuation.due(q)),
                                        q.order)
                      for q in entries if not valuation.eligible(q, now)), key=lambda p: p.due)
    calls = []
    for queued in ready:
        endpoint = queued.order.endpoint
        if (not health.admits(now, 30)[0] or free_slots <= 0
                or not budget.check(endpoint, now).allowed
                or _room_kept(budget, endpoint, now, valuation.value(queued, now),
                              valuation.reserve_above, planned) is not None):
            continue
        budget.record(endpoint, now)
        insort(planned, valuation.planned(now + valuation.ttl(endpoint),
                                          valuation.refresh_value(queued, now), queued.order),
               key=lambda p: p.due)
        health.on_call(now, 30)
        free_slots -= 1
        calls.append(queued.key)
    return calls


@settings(max_examples=300, deadline=None)
@given(sent=st.lists(st.tuples(st.sampled_from(sorted(ENDPOINTS)), st.floats(0, 60)),
                     max_size=8),
       queued=st.lists(st.tuples(st.sampled_from(sorted(ENDPOINTS)), st.integers(0, 9),
                                 st.floats(0, 1),                        # rate of a read
                                 st.one_of(st.none(), st.tuples(
                                     st.floats(55, 90), st.floats(0, 20)))),  # planned
                       min_size=1, max_size=40),
       service_calls=st.sampled_from([6, 10, 20]), endpoint_calls=st.sampled_from([2, 3, 6]),
       free_slots=st.integers(0, 12),
       readers=st.dictionaries(st.integers(0, 9), st.integers(0, 3), max_size=5))
def test_the_selection_is_the_greedy_one_without_asking_every_key(
        sent, queued, service_calls, endpoint_calls, free_slots, readers):
    """Once a limit or the kept room refuses an endpoint's (or the service's) call, every
    call worth no more is refused too, so the selection skips asking: it must choose
    exactly what asking every key, highest rank first, chooses. Tight limits and busy
    planned refreshes make the kept room refuse calls often; waiting readers rank calls
    above others worth more, whose room is judged on their worth alone."""
    budgets = [MemoryBudget("svc", [RateLimit(calls=service_calls, seconds=60)],
                            [RateLimit(calls=endpoint_calls, seconds=60)]) for _ in "ab"]
    for endpoint, at in sorted(sent, key=lambda s: s[1]):
        for budget in budgets:
            budget.record(endpoint, at)
    queue = FetchQueue()
    for endpoint, symbol, rate, plan in queued:
        if plan is None:
            enqueue(queue, order(endpoint, f"S{symbol}", at=40.0, rate=rate))
        else:
            enqueue(queue, order(endpoint, f"S{symbol}", at=40.0, rate=plan[1],
                                 fresh_until=plan[0], reason="planned"))
    valuation = Valuation(ttl_of=TTLS)

    def waiting(key):
        return readers.get(int(key.rsplit("/S", 1)[1]), 0)

    chosen = select_calls(queue, ServiceHealth(), budgets[0], 60.0, service="svc",
                          cooldown=30, free_slots=free_slots, valuation=valuation,
                          waiting=waiting)
    assert keys(chosen) == greedy(queue, ServiceHealth(), budgets[1], 60.0, free_slots,
                                  valuation, waiting)


def test_a_read_waiting_for_its_key_ranks_its_call_first_but_takes_no_kept_room():
    """A reader waiting now is a sure read: its key's call goes before a somewhat busier
    key's when only one fits (worth 6 expected reads and one waiting, against 12
    expected). The room kept for a critical refresh is judged on the call's worth alone,
    so waiting readers do not take it."""
    def chosen(waiting, planned_rate=None):
        budget = MemoryBudget("svc", [RateLimit(calls=1, seconds=60)], [])
        queue = FetchQueue()
        enqueue(queue, order("ls_ratio", "BUSY", rate=0.2))
        enqueue(queue, order("ls_ratio", "WAITED", rate=0.1))
        if planned_rate is not None:
            enqueue(queue, order("ticker", "PLANNED", rate=planned_rate, fresh_until=20.0,
                                 reason="planned"))
        return keys(select_calls(queue, ServiceHealth(), budget, 10.0, service="svc",
                                 cooldown=30, free_slots=8,
                                 valuation=Valuation(ttl_of=TTLS, weights=FLAT),
                                 waiting=lambda key: waiting.get(key, 0)))

    assert chosen({}) == ["svc/ls_ratio/BUSY"]
    assert chosen({"svc/ls_ratio/WAITED": 1}) == ["svc/ls_ratio/WAITED"]
    # A critical refresh due soon (worth about 12) keeps the only slot: counted with its
    # waiting reader the call would be worth more (16), on its worth alone it is not (6).
    assert chosen({"svc/ls_ratio/WAITED": 1}, planned_rate=0.5) == []


def test_a_services_settings_are_how_its_calls_are_valued():
    from quotacache.settings import load_settings

    config = load_settings(
        services={"cryptometer": {"answered_bonus": 30.0, "waiting_miss_worth": 7.0,
                                  "waiting_stale_worth": 3.0, "refresh_margin": 1.5,
                                  "reserve_above": 2.0,
                                  "priority_weights": {"critical": 9.0, "high": 3.0,
                                                       "medium": 1.0, "low": 0.5}}},
    ).service("cryptometer")
    valuation = Valuation.of(config, latency=0.3, hold_until=12.0)
    assert (valuation.latency, valuation.hold_until) == (0.3, 12.0)
    assert (valuation.answered_bonus, valuation.waiting_miss, valuation.waiting_stale,
            valuation.margin, valuation.reserve_above) == (30.0, 7.0, 3.0, 1.5, 2.0)
    assert valuation.weights["critical"] == 9.0 and valuation.weights["low"] == 0.5
    assert valuation.ttl("ticker") == config.endpoints["ticker"].ttl
