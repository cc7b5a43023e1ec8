"""Readers waiting for a key's refresh: woken together, once, by its landing or failure."""

from quotacache.tables.waiters import Waiters


def test_a_watcher_is_woken_when_its_key_lands():
    waiters = Waiters()
    with waiters.watch("k") as landed:
        assert not landed.is_set()
        waiters.wake("k")
        assert landed.is_set()


def test_every_watcher_of_a_key_is_woken_at_once():
    waiters = Waiters()
    with waiters.watch("k") as first, waiters.watch("k") as second:
        waiters.wake("k")
        assert first.is_set() and second.is_set()


def test_waking_one_key_leaves_the_others_waiting():
    waiters = Waiters()
    with waiters.watch("a") as a, waiters.watch("b") as b:
        waiters.wake("a")
        assert a.is_set() and not b.is_set()


def test_a_stopping_worker_wakes_every_reader_of_every_key():
    waiters = Waiters()
    with waiters.watch("a", until=5) as a, waiters.watch("b") as b:
        waiters.wake_all()
        assert a.is_set() and b.is_set() and waiters.until("a") is None


def test_a_reader_arriving_after_a_wake_waits_for_the_next_refresh():
    waiters = Waiters()
    with waiters.watch("k") as early:
        waiters.wake("k")
        with waiters.watch("k") as late:
            assert early.is_set() and not late.is_set()
            waiters.wake("k")
            assert late.is_set()


def test_an_early_reader_leaving_does_not_forget_a_later_ones_wait():
    waiters = Waiters()
    with waiters.watch("k"):
        waiters.wake("k")
        late_watch = waiters.watch("k")
        late = late_watch.__enter__()
    waiters.wake("k")  # the early reader is gone; the late one is still waiting
    assert late.is_set()
    late_watch.__exit__(None, None, None)


def test_waking_a_key_nobody_watches_is_harmless():
    waiters = Waiters()
    waiters.wake("k")
    with waiters.watch("k") as landed:
        assert not landed.is_set()


def test_the_length_counts_readers_still_waiting():
    waiters = Waiters()
    with waiters.watch("a"), waiters.watch("a"), waiters.watch("b"):
        assert len(waiters) == 3
    assert len(waiters) == 0


def test_a_reader_who_left_is_not_woken_later():
    waiters = Waiters()
    with waiters.watch("k") as gone:
        pass
    waiters.wake("k")
    assert not gone.is_set()


def test_the_last_give_up_time_of_a_keys_readers_is_known_while_any_waits():
    waiters = Waiters()
    assert waiters.until("k") is None
    with waiters.watch("k", until=12.0):
        with waiters.watch("k", until=15.0), waiters.watch("k"):  # no deadline: no change
            assert waiters.until("k") == 15.0
        assert waiters.until("k") == 15.0  # the latest one's, an upper bound
    assert waiters.until("k") is None and waiters.until("other") is None


def test_a_wake_ends_the_woken_readers_wait_and_later_ones_set_their_own():
    waiters = Waiters()
    with waiters.watch("k", until=100.0):
        waiters.wake("k")
        assert waiters.until("k") is None
        with waiters.watch("k", until=10.0):
            assert waiters.until("k") == 10.0
