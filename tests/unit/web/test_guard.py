"""The HTTP guard: the token of mutating endpoints and the per-client request limit."""

from quotacache.settings import WebConfig
from quotacache.web.guard import RequestLimiter, authorized, is_peer_request, peer_headers


def test_without_a_token_everyone_may_change_things():
    assert authorized(WebConfig(), None)


def test_a_configured_token_must_be_sent_as_a_bearer_token():
    config = WebConfig(token="s3cret-token")
    assert authorized(config, "Bearer s3cret-token")
    assert authorized(config, "bearer s3cret-token")
    for header in (None, "", "Bearer", "Bearer wrong", "s3cret-token", "Basic s3cret-token",
                   "Bearer s3cret-token-and-more", "Bearer s3cret-toke"):
        assert not authorized(config, header), header


def test_the_token_never_shows_in_the_settings_repr():
    assert "s3cret-token" not in repr(WebConfig(token="s3cret-token"))


def test_each_address_gets_its_burst_then_the_rate():
    now = [100.0]
    limiter = RequestLimiter(rate=10, burst=5, clock=lambda: now[0])
    assert [limiter.take("a") for _ in range(5)] == [0.0] * 5
    wait = limiter.take("a")
    assert 0 < wait <= 0.1
    assert limiter.take("b") == 0.0  # another client is not held back by "a"
    now[0] += 0.1
    assert limiter.take("a") == 0.0  # one more after 1/rate seconds
    assert limiter.take("a") > 0
    now[0] += 60
    assert [limiter.take("a") for _ in range(5)] == [0.0] * 5  # refilled, never above burst
    assert limiter.take("a") > 0


def test_rate_zero_means_no_limit():
    limiter = RequestLimiter(rate=0, burst=1)
    assert all(limiter.take("a") == 0.0 for _ in range(1000))


def test_peers_are_known_by_the_token_only():
    config = WebConfig(token="s3cret-token")
    assert is_peer_request(config, peer_headers(config)["X-Quotacache-Peer"])
    assert not is_peer_request(config, None)
    assert not is_peer_request(config, "guess")
    assert not is_peer_request(WebConfig(), "anything")  # no token: no one is exempt
    assert peer_headers(WebConfig()) == {}


def test_stream_slots_cap_open_streams_and_free_them_when_a_stream_ends():
    from quotacache.web.events import StreamSlots

    slots = StreamSlots(1)
    with slots.taken() as first:
        with slots.taken() as second:
            assert first and not second
    with slots.taken() as again:
        assert again and slots.open == 1
    assert slots.open == 0
