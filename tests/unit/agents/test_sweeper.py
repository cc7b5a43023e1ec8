"""The sweeper: entries past max_staleness become sweep requests on their own partition."""

from quotacache.agents.sweeper import RESWEEP, sweep_once
from quotacache.policy.freshness import CacheEntry
from quotacache.streams.records import RefreshRequest

from .harness import START, running, store, timer


def sweeps(rt):
    return rt.outbox.records(rt.topics.requests, RefreshRequest)


async def test_an_entry_past_max_staleness_becomes_a_sweep_request_keyed_by_its_key(rt, clock):
    await store(rt, "svc", "ticker", "BTC", {"p": 1}, fetched_at=START, ttl=60)
    clock.advance(3600)  # max_staleness
    assert await sweep_once(rt) == 1
    [(key, request)] = sweeps(rt)
    assert key == "svc/ticker/BTC"
    assert (request.endpoint, request.symbol, request.reason) == ("ticker", "BTC", "sweep")


async def test_stale_entries_within_max_staleness_are_kept(rt, clock):
    await store(rt, "svc", "ticker", "BTC", {"p": 1}, fetched_at=START, ttl=60)
    clock.advance(3599)
    assert await sweep_once(rt) == 0
    assert sweeps(rt) == []


async def test_only_the_expired_entries_are_swept(rt, clock):
    await store(rt, "svc", "ticker", "OLD", {"p": 1}, fetched_at=START - 3600, ttl=60)
    await store(rt, "svc", "ticker", "NEW", {"p": 1}, fetched_at=START, ttl=60)
    assert await sweep_once(rt) == 1
    assert [key for key, _ in sweeps(rt)] == ["svc/ticker/OLD"]


async def test_entries_of_endpoints_no_longer_configured_are_left_alone(rt, clock):
    # As restored from the changelog of an older configuration.
    rt.cache.table.data["svc/gone/BTC"] = CacheEntry(1, START - 7200, 60).to_dict()
    rt.cache.table.data["other/ticker/BTC"] = CacheEntry(1, START - 7200, 60).to_dict()
    assert await sweep_once(rt) == 0
    assert sweeps(rt) == []


async def test_the_sweep_timer_publishes_the_sweeps(rt, clock):
    await store(rt, "svc", "ticker", "BTC", {"p": 1}, fetched_at=START - 3600, ttl=60)
    await timer(rt, "sweep_expired")()
    assert [key for key, _ in sweeps(rt)] == ["svc/ticker/BTC"]


async def test_the_sweep_timer_forgets_in_flight_marks_that_expired(rt, clock):
    rt.inflight.claim("svc/ticker/BTC", START)
    rt.inflight.claim("svc/ticker/ETH", START + 10)
    clock.advance(rt.settings.cache.inflight_timeout)
    await timer(rt, "sweep_expired")()
    assert len(rt.inflight) == 1 and rt.inflight.active("svc/ticker/ETH", clock.now)


async def test_a_published_sweep_tombstones_the_entry_on_admission(rt, clock):
    await store(rt, "svc", "ticker", "BTC", {"p": 1}, fetched_at=START - 3600, ttl=60)
    await sweep_once(rt)
    [(key, request)] = sweeps(rt)
    async with running(rt, "admit") as admit:
        await admit.put(request, key=key, topic=rt.topics.requests)
    assert rt.cache.get(key) is None


async def test_a_key_whose_sweep_is_under_way_is_not_asked_again_until_resweep(rt, clock):
    """Admission busy with a backlog has not deleted it yet: no duplicate per run."""
    await store(rt, "svc", "ticker", "BTC", {"p": 1}, fetched_at=START - 3600, ttl=60)
    sweep = timer(rt, "sweep_expired")
    await sweep()
    clock.advance(60)
    await sweep()
    assert len(sweeps(rt)) == 1
    clock.advance(RESWEEP)
    await sweep()
    assert len(sweeps(rt)) == 2
