"""Single-flight marks: one fetch per key at a time, never blocked forever."""

from quotacache.tables.inflight import InFlight


def test_a_key_is_claimed_once_until_released():
    marks = InFlight(timeout=30)
    assert marks.claim("k", now=0)
    assert not marks.claim("k", now=1)
    marks.release("k")
    assert marks.claim("k", now=2)


def test_a_claim_holds_only_its_own_key():
    marks = InFlight(timeout=30)
    assert marks.claim("svc/ticker/BTC", now=0)
    assert marks.claim("svc/ticker/ETH", now=0)


def test_a_mark_is_active_until_released():
    marks = InFlight(timeout=30)
    marks.claim("k", now=0)
    assert marks.active("k", now=29.9)
    marks.release("k")
    assert not marks.active("k", now=1)


def test_a_mark_is_inactive_once_its_timeout_has_passed():
    marks = InFlight(timeout=30)
    marks.claim("k", now=0)
    assert not marks.active("k", now=30)


def test_a_claim_after_expiry_starts_a_new_full_timeout():
    marks = InFlight(timeout=30)
    marks.claim("k", now=0)
    assert marks.claim("k", now=40)
    assert marks.active("k", now=69.9) and not marks.claim("k", now=69.9)


def test_a_refused_claim_does_not_extend_the_mark():
    marks = InFlight(timeout=30)
    marks.claim("k", now=0)
    assert not marks.claim("k", now=20)
    assert marks.claim("k", now=30)


def test_releasing_a_key_without_a_mark_is_harmless():
    marks = InFlight(timeout=30)
    marks.release("never-claimed")
    assert len(marks) == 0 and not marks.active("never-claimed", now=0)


def test_the_length_counts_claimed_keys_until_released():
    marks = InFlight(timeout=30)
    marks.claim("a", now=0)
    marks.claim("b", now=0)
    marks.release("a")
    assert len(marks) == 1


def test_expired_marks_are_forgotten_as_new_keys_are_claimed():
    marks = InFlight(timeout=30)
    for second in range(100):
        marks.claim(f"key-{second}", now=second)
    assert len(marks) <= 31
    assert marks.active("key-99", now=99) and not marks.active("key-60", now=99)



def test_pruning_forgets_only_the_expired_marks():
    marks = InFlight(timeout=30)
    marks.claim("old", now=0)
    marks.claim("running", now=20)
    marks.claim("new", now=35)
    assert len(marks) == 2
    assert marks.active("running", now=35) and not marks.claim("running", now=35)


def test_a_prune_forgets_every_expired_mark_and_keeps_the_running_ones():
    marks = InFlight(timeout=30)
    for i in range(200):
        marks.claim(f"old-{i}", now=0)
    marks.claim("running", now=20)
    marks.prune(now=30)
    assert len(marks) == 1 and marks.active("running", now=30)


def test_a_waiting_key_is_regraded_only_when_its_read_rate_has_grown_by_half():
    marks = InFlight(timeout=30)
    marks.claim("k", now=0, rate=1.0)
    assert not marks.grew("k", 1.4)
    assert marks.grew("k", 1.5)
    assert marks.regrade("k", 1.5)
    assert not marks.regrade("k", 2.0)  # compared with the rate sent last, now 1.5
    assert marks.regrade("k", 2.25)
    marks.release("k")
    assert not marks.grew("k", 100.0)  # no mark, no order waiting


def test_data_fetched_well_before_the_mark_is_not_its_answer():
    inflight = InFlight(timeout=30)
    assert inflight.claim("k", now=100.0)
    inflight.release("k", fetched_at=40.0)  # published by someone else, a minute old
    assert inflight.active("k", 101.0)
    inflight.release("k", fetched_at=100.5)  # the call's own answer
    assert not inflight.active("k", 101.0)
    assert inflight.claim("k", now=200.0)
    inflight.release("k", fetched_at=197.0)  # within the clocks' skew: taken as the answer
    assert not inflight.active("k", 201.0)


def test_a_reader_waiting_while_the_order_says_none_does_is_news_once():
    marks = InFlight(timeout=30)
    marks.claim("k", now=0, rate=1.0, until=5.0)  # the order: a reader waits till 5
    assert not marks.grew("k", 1.0, now=1, until=4.0)  # it says so already
    assert not marks.grew("k", 1.0, now=2)  # a read that does not wait
    assert marks.grew("k", 1.0, now=6, until=8.0)  # after 5 the order says nobody waits
    assert marks.regrade("k", 1.0, now=6, until=8.0)  # re-sent, till 8
    assert not marks.grew("k", 1.0, now=7, until=9.0)
    assert not marks.grew("other", 1.0, now=7, until=9.0)  # not claimed: no order to amend
