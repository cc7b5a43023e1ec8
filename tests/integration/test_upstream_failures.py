"""Each kind of upstream failure: the service pauses, backs off or opens its breaker, and
reads keep being answered STALE with their age, never with a 5xx."""

from __future__ import annotations

import time

import pytest

from quotacache.dev.broker import free_port
from quotacache.streams.records import DataRecord

from .conftest import apoll, json_key

pytestmark = pytest.mark.integration

FAST_RECOVERY = """
retry_base = "0.1s"
retry_cap = "0.3s"
retry_attempts = 2
breaker_failures = 3
breaker_cooldown = "3s"
timeout = "0.5s"
"""


async def seed_stale(deployment, worker, symbols=("BTC",), *, wait_served=True):
    """Publish stale entries and (``wait_served``) wait until the worker serves them.
    Call it with the upstream already failing: a read of a key not yet materialized
    asks for a refresh."""
    records = [DataRecord(service="cryptometer", endpoint="ticker", symbol=s, data={"old": s},
                          fetched_at=time.time() - 600, ttl=120) for s in symbols]
    await deployment.produce(deployment.topic("data.cryptometer.ticker"),
                             [(json_key(r.key), r.to_json()) for r in records])
    for symbol in symbols if wait_served else ():
        await apoll(lambda s=symbol: worker.get(f"/cache/cryptometer/ticker/{s}")
                    .headers.get("X-Cache") == "STALE", message=f"{symbol} seeded")


def status(worker):
    return worker.get("/status").json()["services"]["cryptometer"]


def read_stale(worker, symbol="BTC"):
    response = worker.get(f"/cache/cryptometer/ticker/{symbol}")
    assert response.status_code == 200, response.text
    assert response.headers["X-Cache"] == "STALE" and int(response.headers["Age"]) >= 600
    return response


@pytest.mark.parametrize("mode", ["429", "429date"])
async def test_429_pauses_the_service_until_retry_after_and_reads_stay_stale(deployment,
                                                                             mode):
    deployment.configure(FAST_RECOVERY)
    worker = deployment.start_worker()
    # Counting calls: no read may ask for a refresh before the first 429 pauses the
    # service, so only BTC is read until then.
    await seed_stale(deployment, worker, ["BTC", "ETH", "SOL"], wait_served=False)
    deployment.simulator.configure(fail={"cryptometer": mode}, fail_retry_after=6)
    await apoll(lambda: worker.get("/cache/cryptometer/ticker/BTC").headers["X-Cache"]
                == "STALE")
    state = await apoll(lambda: (s := status(worker))["paused_until"] and s,
                        message="service paused")
    assert state["pause_reason"] == "429 from upstream"
    assert 3 <= state["paused_until"] - time.time() <= 7
    read_stale(worker, "ETH")
    read_stale(worker, "SOL")  # these reads ask for refreshes, which must wait
    calls = deployment.simulator.stats()["accepted"]
    assert calls == 1
    paused_until = state["paused_until"]
    while time.time() < paused_until - 0.5:
        read_stale(worker, "BTC")
        assert deployment.simulator.stats()["accepted"] == calls  # nothing sent while paused
        time.sleep(0.3)
    deployment.simulator.configure(fail={"cryptometer": None})
    await apoll(lambda: worker.get("/cache/cryptometer/ticker/ETH").headers["X-Cache"] == "HIT",
                timeout=20, message="refreshed after the pause")
    assert worker.stats()["rate_limited"] >= 1


@pytest.mark.parametrize("mode", ["500", "garbage", "timeout", "error_envelope"])
async def test_failures_back_off_open_the_breaker_and_recover(deployment, mode):
    deployment.configure(FAST_RECOVERY)
    worker = deployment.start_worker()
    deployment.simulator.configure(fail={"cryptometer": mode})
    await seed_stale(deployment, worker)
    read_stale(worker)
    # An answer that is not JSON fails the same way on a retry: it is not retried, and
    # each read of the stale key makes one call until the breaker opens.
    retried = mode != "garbage"
    await apoll(lambda: (retried or read_stale(worker))
                and status(worker)["breaker"] == "open", timeout=20, interval=0.3,
                message="breaker open")
    stats = worker.stats()
    assert (stats["retries"] >= 1) == retried and stats["errors"] >= 3
    calls = deployment.simulator.stats()["accepted"]
    read_stale(worker)
    assert deployment.simulator.stats()["accepted"] == calls  # open: no call
    deployment.simulator.configure(fail={"cryptometer": None})
    await apoll(lambda: worker.get("/cache/cryptometer/ticker/BTC").headers["X-Cache"] == "HIT",
                timeout=20, message="recovered through a half-open trial")
    assert status(worker)["breaker"] == "closed"


@pytest.mark.both_brokers
async def test_connection_refused_is_a_failure_like_any_other(deployment):
    deployment.configure(FAST_RECOVERY, base_url=f"http://127.0.0.1:{free_port()}")
    worker = deployment.start_worker()
    await seed_stale(deployment, worker)
    read_stale(worker)
    await apoll(lambda: status(worker)["breaker"] == "open", timeout=20)
    read_stale(worker)
    assert worker.stats()["errors"] >= 3


#: Ten breaker cooldowns (3 s): enough to see trials stay one per cooldown.
DOWN_FOR = 30.0


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def test_upstream_down_for_half_a_minute_stale_answers_throughout_then_recovery(
        deployment):
    # The trials of the outage spend the endpoint's budget (they were sent): with the
    # profile's 10/60 s, recovery would wait for them to leave the window.
    deployment.configure(FAST_RECOVERY + 'endpoint_limits = ["30/60"]\n')
    worker = deployment.start_worker()
    symbols = ("BTC", "ETH", "SOL")
    deployment.simulator.configure(fail={"cryptometer": "500"},
                                   endpoint_limits={"cryptometer": ["30/60"]})
    await seed_stale(deployment, worker, symbols)
    calls_before = deployment.simulator.stats()["accepted"]
    reads, breaker_states = 0, set()
    until = time.monotonic() + DOWN_FOR
    while time.monotonic() < until:  # every read is STALE with its age, none fails
        for symbol in symbols:
            read_stale(worker, symbol)
            reads += 1
        breaker_states.add(status(worker)["breaker"])
        time.sleep(0.5)
    calls_down = deployment.simulator.stats()["accepted"] - calls_before
    assert "open" in breaker_states
    # Each read asked for a refresh (hundreds of them); the open breaker let through about
    # one trial per cooldown (3 s) instead, after the failures that opened it (13 seen).
    assert calls_down <= DOWN_FOR / 3 + 6, calls_down
    deployment.simulator.configure(fail={"cryptometer": None})
    for symbol in symbols:
        await apoll(lambda s=symbol: worker.get(f"/cache/cryptometer/ticker/{s}")
                    .headers["X-Cache"] == "HIT", timeout=30, message=f"{symbol} recovered")
    assert status(worker)["breaker"] == "closed"
    print(f"\nupstream down {DOWN_FOR:.0f} s: {reads} reads all STALE, {calls_down} calls, "
          "then recovered")


@pytest.mark.slow
async def test_slow_upstream_is_cut_at_the_timeout_and_nothing_piles_up(deployment):
    # Limits far above what 8 calls a second can spend: timed-out calls count against the
    # budget (they were sent), and the test is about piling up, not about the budget.
    deployment.configure('timeout = "1s"\nendpoint_limits = ["1000/60"]\n'
                         'limits = ["1000/60"]\nbreaker_failures = 1000\n')
    deployment.simulator.configure(endpoint_limits={"cryptometer": ["1000/60"]},
                                   limits={"cryptometer": ["1000/60"]})
    worker = deployment.start_worker()
    baseline_tasks = worker.get("/status").json()["asyncio_tasks"]
    baseline_rss = rss_mb(worker.child.pid)
    deployment.simulator.configure(latency=[3.0, 4.0])
    symbols = [f"S{i}" for i in range(40)]
    samples = []
    until = time.monotonic() + 25
    while time.monotonic() < until:  # readers keep asking: every read is a refresh request
        for symbol in symbols[:10]:
            started = time.monotonic()
            answer = worker.get(f"/cache/cryptometer/ticker/{symbol}")
            assert answer.status_code == 202 and time.monotonic() - started < 1.0
        for symbol in symbols[10:]:
            worker.get(f"/cache/cryptometer/ls_ratio/{symbol}")
        state = worker.get("/status").json()
        samples.append((state["asyncio_tasks"], state["services"]["cryptometer"]))
        time.sleep(0.2)
    max_tasks = max(tasks for tasks, _ in samples)
    max_in_flight = max(service["in_flight_calls"] for _, service in samples)
    growth = rss_mb(worker.child.pid) - baseline_rss
    stats = worker.stats()
    print(f"\nslow upstream 25 s: {stats['errors']} timeouts, at most {max_in_flight} calls "
          f"in flight, tasks {baseline_tasks} -> {max_tasks}, RSS +{growth:.0f} MB")
    assert max_in_flight <= deployment.settings.service("cryptometer").max_in_flight
    assert stats["errors"] >= 20  # each call cut after 1 s, not left for 3-4 s
    assert max_tasks < baseline_tasks + 40
    assert growth < 60
    deployment.simulator.configure(latency=[0.01, 0.03])
    await apoll(lambda: worker.get("/cache/cryptometer/ticker/S0").headers["X-Cache"] == "HIT",
                timeout=30, message="served again once the upstream is fast")
