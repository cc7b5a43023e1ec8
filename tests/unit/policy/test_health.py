"""Service health: pauses after 429s, the upstream's own hints, and the circuit breaker."""


from quotacache.policy.health import Breaker, ServiceHealth


def test_a_short_retry_after_does_not_shorten_a_longer_pause():
    health = ServiceHealth()
    health.on_rate_limited(now=100, retry_after=60, default=60)
    health.on_rate_limited(now=110, retry_after=5, default=60)
    assert health.paused_until == 160


def test_the_refusal_says_why():
    health = ServiceHealth()
    health.on_rate_limited(now=100, retry_after=30, default=60)
    assert health.admits(101, cooldown=30) == (False, "paused until 130 (429 from upstream)")
    health = ServiceHealth()
    health.on_failure(now=0, threshold=1)
    assert health.admits(1, cooldown=30) == (False, "circuit breaker open")


def test_failures_below_the_threshold_keep_the_breaker_closed():
    health = ServiceHealth()
    for now in range(4):
        health.on_failure(now=now, threshold=5)
    assert health.breaker_state(4, 30) is Breaker.CLOSED and health.admits(4, 30)[0]


def test_a_success_resets_the_count_of_consecutive_failures():
    health = ServiceHealth()
    for now in range(4):
        health.on_failure(now=now, threshold=5)
    health.on_success()
    health.on_failure(now=5, threshold=5)
    assert health.breaker_state(6, 30) is Breaker.CLOSED


def test_a_429_on_the_trial_call_frees_the_trial_once_the_pause_is_over():
    health = ServiceHealth()
    health.on_failure(now=0, threshold=1)
    health.on_call(30, cooldown=30)  # the half-open trial
    health.on_rate_limited(now=31, retry_after=5, default=60)
    assert not health.admits(35.9, 30)[0]
    assert health.admits(36, 30)[0]


def test_an_upstream_hint_stops_calls_only_once_none_remain():
    health = ServiceHealth()
    health.on_hint(remaining=1, reset_at=100, limit=10)
    assert health.admits(50, 30)[0]
    health.on_call(50, 30)
    assert health.admits(51, 30) == (False, "upstream reports no calls remaining")
    assert health.admits(100, 30)[0]  # the reset


def test_after_an_exhausted_hint_resets_one_probe_goes_and_the_rest_wait_for_its_answer():
    """A sliding window frees one call at its reset, maybe no more: a burst sent then
    would meet 429s."""
    health = ServiceHealth()
    health.on_hint(remaining=0, reset_at=100, limit=10)
    assert health.admits(100, 30)[0]
    health.on_call(100, 30)
    assert health.admits(100, 30) == (False, "waiting for the upstream's answer after its reset")
    health.on_success()
    health.on_hint(remaining=4, reset_at=160, limit=10)  # the probe's answer
    assert health.admits(100.3, 30)[0]
    health.on_call(100.3, 30)
    assert health.admits(100.3, 30)[0]  # a current hint with calls left: no probe


def test_after_a_probe_answered_without_a_hint_calls_flow_again():
    health = ServiceHealth()
    health.on_hint(remaining=0, reset_at=100, limit=10)
    health.on_call(100, 30)
    health.on_success()  # no X-RateLimit headers this time
    for second in range(3):
        assert health.admits(101 + second, 30)[0]
        health.on_call(101 + second, 30)


def test_a_probe_whose_answer_is_lost_holds_calls_back_for_a_while_only():
    health = ServiceHealth()
    health.on_hint(remaining=0, reset_at=100, limit=10)
    health.on_call(100, 30)
    assert not health.admits(109.9, 30)[0]
    assert health.admits(110, 30)[0]


def test_hinted_use_is_the_upstreams_view_while_its_hint_is_current():
    health = ServiceHealth()
    health.on_hint(remaining=25, reset_at=100, limit=100)
    assert health.hinted_use(99) == 0.75
    assert health.hinted_use(100) is None


def test_hinted_use_is_unknown_without_a_limit_and_bounded_with_one():
    health = ServiceHealth()
    health.on_hint(remaining=5, reset_at=100)
    assert health.hinted_use(50) is None
    health.on_hint(remaining=-3, reset_at=100, limit=10)  # after calls counted down
    assert health.hinted_use(50) == 1.0


def test_the_state_survives_the_table_format():
    health = ServiceHealth()
    health.on_rate_limited(now=10, retry_after=5, default=60)
    health.on_hint(remaining=3, reset_at=100, limit=10)
    health.on_failure(now=10, threshold=1)
    assert ServiceHealth.from_dict(health.to_dict()) == health


def test_a_stored_state_from_another_version_loads_what_it_knows():
    assert ServiceHealth.from_dict(None) == ServiceHealth()
    loaded = ServiceHealth.from_dict({"paused_until": 50.0, "retired_field": 1})
    assert loaded.paused_until == 50.0 and loaded.breaker == "closed"


def test_after_a_429_pause_one_probe_goes_and_the_rest_wait_for_its_answer():
    """The upstream said no and did not say how many calls its window frees at the end
    of the pause: a burst of every free call slot then would meet as many 429s."""
    health = ServiceHealth()
    health.on_hint(remaining=40, reset_at=200, limit=100)  # an old hint, from before the 429
    health.on_rate_limited(now=100, retry_after=5, default=60)
    assert not health.admits(104.9, 30)[0]
    assert health.admits(105, 30)[0]
    health.on_call(105, 30)
    assert health.admits(105, 30) == (False, "waiting for the upstream's answer after its reset")
    health.on_success()
    health.on_hint(remaining=3, reset_at=160, limit=100)
    assert health.admits(105.4, 30)[0]


def test_a_hint_from_an_answer_older_than_a_429_does_not_undo_its_probe():
    """A success sends its data before its feedback: its old count can be read after a
    later call's 429, and must not reopen the burst the 429's probe prevents."""
    health = ServiceHealth()
    health.on_rate_limited(now=100, retry_after=5, default=60)
    health.on_success(at=99.8)
    health.on_hint(remaining=5, reset_at=160, limit=100, at=99.8)
    assert health.hint_remaining == 0 and health.hint_reset == 105
    health.on_call(105, 30)  # the probe
    assert not health.admits(105, 30)[0]


def test_an_older_answer_read_late_neither_replaces_a_newer_hint_nor_ends_a_probe():
    health = ServiceHealth()
    health.on_hint(remaining=0, reset_at=100, limit=10, at=50)
    health.on_call(100, 30)  # the probe leaves at 100
    health.on_success(at=99.5)  # a call answered before the probe left
    health.on_hint(remaining=6, reset_at=160, limit=10, at=40)
    assert health.admits(100.2, 30) == (False, "waiting for the upstream's answer after its reset")
    health.on_success(at=100.3)  # the probe's answer
    health.on_hint(remaining=2, reset_at=160, limit=10, at=100.3)
    assert health.admits(100.4, 30)[0] and health.hint_remaining == 2
