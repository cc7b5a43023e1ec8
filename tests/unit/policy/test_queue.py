"""The per-service queue: one entry per key, with its read rate and freshness; the backlog."""

import math

from quotacache.policy.queue import (
    FIRST_FETCH_PATIENCE,
    MIN_READS,
    RATE_TAU,
    Backlog,
    FetchQueue,
)
from quotacache.settings import Priority
from quotacache.streams.records import FetchOrder

ENDPOINTS = {"ticker": Priority.CRITICAL, "ls_ratio": Priority.HIGH,
             "ai_screener": Priority.MEDIUM, "coinlist": Priority.LOW}


def order(endpoint, symbol="BTC", at=0.0, rate=0.0, fresh_until=None, **fields):
    fields.setdefault("priority", ENDPOINTS[endpoint])
    return FetchOrder(service="svc", endpoint=endpoint, symbol=symbol, reason="read",
                      requested_at=at, rate=rate, fresh_until=fresh_until, **fields)


def enqueue(queue, o):
    """The one order ``o`` pushed out of the queue, if any."""
    pushed = queue.add(o.key, o)
    assert len(pushed) <= 1
    return pushed[0] if pushed else None


def only(queue):
    [queued] = queue.entries()
    return queued


# -- merging ---------------------------------------------------------------------------

def test_orders_for_one_key_merge_into_one_entry():
    queue = FetchQueue()
    enqueue(queue, order("ticker", at=1))
    enqueue(queue, order("ticker", at=2))
    enqueue(queue, order("ticker", "ETH", at=3))
    assert len(queue) == 2


def test_a_merged_entry_keeps_the_highest_priority_and_the_first_request_time():
    queue = FetchQueue()
    enqueue(queue, order("coinlist", at=1))
    enqueue(queue, order("coinlist", at=5, priority=Priority.HIGH))
    enqueue(queue, order("coinlist", at=9, priority=Priority.LOW))
    merged = only(queue).order
    assert merged.priority is Priority.HIGH and merged.requested_at == 1


def test_a_merged_entry_takes_the_newest_freshness():
    queue = FetchQueue()
    enqueue(queue, order("ticker", at=1, fresh_until=100.0))
    enqueue(queue, order("ticker", at=2, fresh_until=160.0))
    assert only(queue).order.fresh_until == 160.0


def test_force_and_the_retry_count_are_not_lost_in_a_merge():
    queue = FetchQueue()
    enqueue(queue, order("ticker", at=1, force=True, attempt=2))
    enqueue(queue, order("ticker", at=2))
    merged = only(queue).order
    assert merged.force and merged.attempt == 2


def test_a_merged_entry_keeps_the_latest_time_a_reader_waits_till():
    queue = FetchQueue()
    enqueue(queue, order("ticker", at=1, readers_until=9.0))
    enqueue(queue, order("ticker", at=2))
    assert only(queue).order.readers_until == 9.0
    enqueue(queue, order("ticker", at=3, readers_until=12.0))
    queued = only(queue)
    assert queued.order.readers_until == 12.0
    # A call landing by then answers one reader at least; those here count as they are.
    assert [queued.readers_waiting(0, 11.9), queued.readers_waiting(0, 12.1),
            queued.readers_waiting(3, 11.9)] == [1, 0, 3]


def test_a_merged_entry_keeps_the_higher_of_the_new_and_the_faded_rate():
    queue = FetchQueue()
    enqueue(queue, order("ticker", at=0, rate=2.0))
    enqueue(queue, order("ticker", at=RATE_TAU, rate=0.5))
    assert math.isclose(only(queue).rate(RATE_TAU), 2.0 / math.e)
    enqueue(queue, order("ticker", at=RATE_TAU, rate=1.0))
    assert only(queue).rate(RATE_TAU) == 1.0


def test_a_rate_fades_with_the_time_since_it_was_measured():
    queue = FetchQueue()
    enqueue(queue, order("ticker", at=100, rate=3.0))
    queued = only(queue)
    assert queued.rate(100) == 3.0
    assert math.isclose(queued.rate(100 + RATE_TAU), 3.0 / math.e)
    assert queued.rate(50) == 3.0  # a clock behind the measure does not inflate it


def test_a_rate_measured_after_the_request_fades_from_when_it_was_measured():
    """An order handed to a service's new owner keeps its first request time and carries
    when its rate was measured: the rate fades from then, not from the request."""
    queue = FetchQueue()
    enqueue(queue, order("ticker", at=100, rate=3.0, rate_at=220.0))
    queued = only(queue)
    assert queued.rate(220) == 3.0 and queued.order.requested_at == 100
    enqueue(queue, order("ticker", at=230, rate=1.0))
    assert math.isclose(only(queue).rate(230), 3.0 * math.exp(-10 / RATE_TAU))


# -- a full queue ----------------------------------------------------------------------

def test_a_full_queue_pushes_out_the_least_read_entry():
    queue = FetchQueue(limit=2)
    enqueue(queue, order("ticker", "A", rate=0.1))
    enqueue(queue, order("coinlist", "B", rate=2.0))
    pushed = enqueue(queue, order("ticker", "C", rate=1.0))
    assert pushed.symbol == "A"
    assert sorted(q.key for q in queue.entries()) == ["svc/coinlist/B", "svc/ticker/C"]


def test_a_new_order_read_least_is_itself_pushed_out():
    queue = FetchQueue(limit=1)
    enqueue(queue, order("ticker", "A", rate=1.0))
    assert enqueue(queue, order("ticker", "B", rate=0.1)).symbol == "B"
    assert [q.key for q in queue.entries()] == ["svc/ticker/A"]


def test_among_keys_read_alike_the_lowest_priority_is_pushed_out():
    queue = FetchQueue(limit=2)
    enqueue(queue, order("ticker", rate=1.0))
    enqueue(queue, order("coinlist", rate=1.0))
    assert enqueue(queue, order("ls_ratio", rate=1.0)).endpoint == "coinlist"


def test_a_merge_never_pushes_anything_out_of_a_full_queue():
    queue = FetchQueue(limit=1)
    enqueue(queue, order("coinlist"))
    assert enqueue(queue, order("coinlist", priority=Priority.CRITICAL)) is None
    assert len(queue) == 1


# -- keys nobody reads -----------------------------------------------------------------

def test_a_planned_refresh_of_a_key_nobody_reads_is_dropped():
    queue = FetchQueue()
    enqueue(queue, order("ticker", rate=0.0, fresh_until=60.0))
    dropped = queue.drop_unread(now=0, ttl_of={"ticker": 60.0})
    assert [o.key for o in dropped] == ["svc/ticker/BTC"] and len(queue) == 0


def test_a_key_read_often_enough_is_kept():
    queue = FetchQueue()
    enqueue(queue, order("ticker", rate=2 * MIN_READS / 60.0, fresh_until=60.0))
    assert queue.drop_unread(now=0, ttl_of={"ticker": 60.0}) == []


def test_a_key_whose_reads_have_faded_is_dropped_later():
    queue = FetchQueue()
    enqueue(queue, order("ticker", at=0, rate=0.01, fresh_until=60.0))  # 0.6 reads per TTL
    assert queue.drop_unread(now=0, ttl_of={"ticker": 60.0}) == []
    assert len(queue.drop_unread(now=3 * RATE_TAU, ttl_of={"ticker": 60.0})) == 1


def test_first_fetches_and_forced_orders_are_kept_however_little_read():
    queue = FetchQueue()
    enqueue(queue, order("ticker", "NEW", rate=0.0))
    enqueue(queue, order("ticker", "FORCED", rate=0.0, fresh_until=60.0, force=True))
    assert queue.drop_unread(now=0, ttl_of={"ticker": 60.0}) == []
    assert len(queue) == 2


def test_a_first_fetch_nobody_reads_any_more_is_dropped_after_its_patience():
    """A key read once is not called hours later, when a flood of new keys has kept the
    budget busy meanwhile (at 10 calls a minute, 2,000 keys read once took 3.3 hours of
    paid calls); while the budget has room it was called long before its patience."""
    queue = FetchQueue()
    enqueue(queue, order("ticker", "ONCE", rate=1 / 600))  # faded below MIN_READS at 42 s
    enqueue(queue, order("ticker", "WAITED", rate=1 / 600,
                         readers_until=FIRST_FETCH_PATIENCE + 10))
    enqueue(queue, order("ticker", "POPULAR", rate=5.0))
    ttl = {"ticker": 60.0}
    assert queue.drop_unread(now=FIRST_FETCH_PATIENCE - 1, ttl_of=ttl) == []
    dropped = queue.drop_unread(now=FIRST_FETCH_PATIENCE + 1, ttl_of=ttl)
    assert [o.symbol for o in dropped] == ["ONCE"]
    assert sorted(q.order.symbol for q in queue.entries()) == ["POPULAR", "WAITED"]
    assert [o.symbol for o in queue.drop_unread(now=FIRST_FETCH_PATIENCE + 11,
                                                ttl_of=ttl)] == ["WAITED"]


def test_a_full_queue_sheds_a_tenth_of_itself_at_once_the_least_read_first():
    """One scan of the queue per tenth of it, not per order: a flood of new keys into a
    full queue costs a sort now and then, not a scan of 10,000 entries each."""
    queue = FetchQueue(limit=100)
    for i in range(100):
        enqueue(queue, order("ls_ratio", f"K{i:03d}", rate=1.0 + i))
    pushed = queue.add("svc/ls_ratio/NEW", order("ls_ratio", "NEW", rate=50.5))
    assert sorted(o.symbol for o in pushed) == [f"K{i:03d}" for i in range(11)]
    assert len(queue) == 90
    assert queue.add("svc/ls_ratio/NEXT", order("ls_ratio", "NEXT", rate=0.0)) == []


# -- the rest --------------------------------------------------------------------------

def test_a_removed_order_is_no_longer_queued_and_removing_twice_is_harmless():
    queue = FetchQueue()
    enqueue(queue, order("ticker"))
    assert "svc/ticker/BTC" in queue
    queue.remove("svc/ticker/BTC")
    queue.remove("svc/ticker/BTC")
    assert "svc/ticker/BTC" not in queue and len(queue) == 0


def test_the_queue_counts_its_orders_per_priority():
    queue = FetchQueue()
    enqueue(queue, order("ticker", "A"))
    enqueue(queue, order("ticker", "B"))
    enqueue(queue, order("coinlist"))
    assert queue.by_priority() == {"critical": 2, "high": 0, "medium": 0, "low": 1}


def test_the_backlog_of_a_service_without_a_queue_is_all_zeros_and_creates_none():
    backlog = Backlog()
    assert backlog.by_priority("svc") == {"critical": 0, "high": 0, "medium": 0, "low": 0}
    assert "svc" not in backlog.queues


def test_the_backlog_counts_each_services_queue_apart():
    backlog = Backlog()
    enqueue(backlog.queues["a"], order("ticker"))
    enqueue(backlog.queues["b"], order("coinlist"))
    assert backlog.by_priority("a")["critical"] == 1 and backlog.by_priority("a")["low"] == 0
    assert backlog.by_priority("b")["low"] == 1


def test_call_latency_is_a_moving_average_per_service():
    backlog = Backlog()
    assert backlog.latency["svc"] == 0.5  # before any call
    backlog.observe_latency("svc", 1.5)
    assert math.isclose(backlog.latency["svc"], 0.7)
    assert backlog.latency["other"] == 0.5


def test_a_429_pause_holds_until_the_health_table_holds_each_pause_or_probe_wait_passes():
    backlog = Backlog()
    backlog.pause("svc", until=100)
    backlog.pause("svc", until=130)  # two 429s before either feedback is back
    assert backlog.paused("svc", 135)  # past both pauses: their feedbacks are not stored
    backlog.confirm_pause("svc")
    assert backlog.paused("svc", 135)  # one is stored, the longer one may not be
    backlog.confirm_pause("svc")
    assert not backlog.paused("svc", 130) and backlog.paused("svc", 129.9)
    backlog.pause("svc", until=200)
    assert backlog.paused("svc", 209.9) and not backlog.paused("svc", 210)  # lost: PROBE_WAIT
