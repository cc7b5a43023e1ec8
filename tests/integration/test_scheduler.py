"""The unified scheduler on the embedded broker: monitored symbols, batches, strategies."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from .conftest import poll

pytestmark = pytest.mark.integration


def post(worker, path, body):
    return httpx.post(worker.url + path, json=body, timeout=10)


def cache_status(worker, path):
    return worker.get(f"/cache/{path}").headers.get("X-Cache")


def episodes(seen):
    """Per key: the seconds (since watching began), phase and status of each stale look."""
    out: dict[str, list] = {}
    for key, at, phase, status in seen:
        out.setdefault(key, []).append((at, phase, status))
    return out


def test_monitored_symbols_are_fetched_without_any_read_and_survive_a_restart(deployment):
    deployment.configure('[scheduler]\nscan_interval = "1s"\n')
    worker = deployment.start_worker()
    answer = post(worker, "/symbols", {"symbols": ["btc", "ETH"],
                                       "endpoints": ["cryptometer/ticker",
                                                     "cryptometer/ls_ratio"]})
    assert answer.status_code == 200
    assert answer.json()["symbols"]["BTC"] == ["cryptometer/ls_ratio", "cryptometer/ticker"]
    keys = [f"cryptometer/{e}/{s}" for e in ("ticker", "ls_ratio") for s in ("BTC", "ETH")]
    # A read of a missing key would ask for a refresh itself: wait for the calls first.
    poll(lambda: deployment.simulator.stats()["accepted"] == 4, timeout=30,
         message="four scheduled fetches")
    poll(lambda: all(cache_status(worker, key) == "HIT" for key in keys), timeout=10,
         message="the four entries cached")
    assert deployment.simulator.stats()["accepted"] == 4
    assert worker.stats()["monitored_symbols"] == 2

    worker.child.stop()
    again = deployment.start_worker("w2", data_dir=worker.data_dir)
    assert set(again.get("/symbols").json()["symbols"]) == {"BTC", "ETH"}
    removed = httpx.request("DELETE", again.url + "/symbols", json={"symbols": ["ETH"]})
    assert removed.json()["removed"] == ["ETH"]
    assert set(again.get("/symbols").json()["symbols"]) == {"BTC"}


def test_a_batch_with_a_list_endpoint_costs_one_call_for_the_list(deployment):
    worker = deployment.start_worker()
    answer = post(worker, "/batch", {"symbols": ["BTC", "ETH", "SOL"],
                                     "endpoints": ["cryptometer/ticker", "cryptometer/ls_ratio",
                                                   "cryptometer/tickerlist_pro"]})
    assert answer.status_code == 202 and len(answer.json()["requested"]) == 7
    keys = [f"cryptometer/{e}/{s}" for e in ("ticker", "ls_ratio", "tickerlist_pro")
            for s in ("BTC", "ETH", "SOL")]
    poll(lambda: all(cache_status(worker, key) == "HIT" for key in keys), timeout=30,
         message="all nine entries")
    assert deployment.simulator.stats()["accepted"] == 7  # 3 + 3 + one list for three
    listed = worker.get("/cache/cryptometer/tickerlist_pro/ETH").json()["data"]
    assert listed["symbol"] == "ETH"  # the list's own item for ETH


def test_strategy_pin_release_volatility_and_bad_bodies(deployment):
    worker = deployment.start_worker()
    pinned = post(worker, "/strategy", {"service": "cryptometer", "strategy": "minimal"})
    assert pinned.status_code == 200 and pinned.json()["pinned"] is True
    status = worker.get("/status").json()["services"]["cryptometer"]
    assert status["strategy"] == "MINIMAL" and status["strategy_pinned"] is True
    released = post(worker, "/strategy", {"service": "cryptometer", "release": True})
    assert released.json()["pinned"] is False
    # The history lives in a global table: /stats shows it once its changelog is read.
    def reasons():
        return [h["reason"] for h in worker.stats()["strategy_history"]["cryptometer"]]

    poll(lambda: reasons() == ["manual pin", "manual pin released"], timeout=10,
         message="pin, then release, in the strategy history")

    deployment_produce = deployment.produce(deployment.topic("volatility"), [
        (None, json.dumps({"symbol": "sol", "score": 0.95}).encode()),
        (None, b"not json")])
    import asyncio

    asyncio.run(deployment_produce)
    poll(lambda: "SOL" in worker.get("/status").json()["volatile"], timeout=20)

    for path, body, code in [
        ("/strategy", {"service": "nope", "strategy": "NORMAL"}, 404),
        ("/strategy", {"service": "cryptometer", "strategy": "FAST"}, 400),
        ("/symbols", {"symbols": "BTC"}, 400),
        ("/symbols", {"symbols": ["../x"]}, 400),
        ("/symbols", {"symbols": ["BTC"], "endpoints": ["cryptometer/nope"]}, 404),
        ("/batch", {"symbols": ["BTC"], "endpoints": ["nope/ticker"]}, 404),
        ("/batch", {"symbols": ["BTC"]}, 400),
        ("/refresh", {"service": "cryptometer"}, 400),
        ("/refresh", {"service": "cryptometer", "endpoint": "ticker", "priority": "x"}, 400),
    ]:
        answer = post(worker, path, body)
        assert answer.status_code == code and "error" in answer.json(), (path, body)
    bad_json = httpx.post(worker.url + "/batch", content=b"{", timeout=10)
    assert bad_json.status_code == 400 and "not JSON" in bad_json.json()["error"]


#: The profile's minute limit and TTLs (100/60; 2m, 3m, 5m) with time running twice as
#: fast. The bursts (20/10, 10/5) stay the profile's, and the endpoint keeps the 40 calls
#: per window this test always gave it (40/60 before): the fill of 25 tickers still fits
#: in one window, so the endpoint is twice as loose as before in scaled time.
LIMITS, ENDPOINT_LIMITS = ["50/30", "20/10", "10/5"], ["40/30"]
TTLS = {"ticker": "60s", "rapid_movements": "90s", "ls_ratio": "150s"}
WINDOW = 30


@pytest.mark.slow
def test_twenty_five_symbols_stay_fresh_and_the_strategy_follows_the_budget(deployment):
    """Over about two minutes: fill, steady NORMAL, limits lowered (CONSERVATIVE or
    MINIMAL), raised (NORMAL again); critical keys stay fresh throughout, nothing is
    rejected. Time runs twice as fast as the profile's: 30 s windows, TTLs halved."""
    deployment.configure(
        f"limits = {json.dumps(LIMITS)}\nendpoint_limits = {json.dumps(ENDPOINT_LIMITS)}\n"
        + "".join(f'[services.cryptometer.endpoints.{name}]\nttl = "{ttl}"\n'
                  for name, ttl in TTLS.items())
        + '[scheduler]\nscan_interval = "2s"\nevaluate_interval = "2s"\nmin_dwell = "8s"\n')
    sim = deployment.simulator
    sim.configure(limits={"cryptometer": LIMITS},
                  endpoint_limits={"cryptometer": ENDPOINT_LIMITS})
    worker = deployment.start_worker()
    symbols = [f"K{i:02d}" for i in range(25)]
    post(worker, "/symbols", {"symbols": symbols, "endpoints": [
        "cryptometer/ticker", "cryptometer/ls_ratio", "cryptometer/rapid_movements"]})
    critical = [f"cryptometer/ticker/{s}" for s in symbols] + ["cryptometer/rapid_movements/*"]

    def strategy():
        return worker.get("/status").json()["services"]["cryptometer"].get("strategy")

    poll(lambda: all(cache_status(worker, k) == "HIT" for k in critical), timeout=90,
         interval=1, message="critical keys filled")
    # The fill spends the whole budget (MINIMAL); NORMAL returns once its calls leave
    # the window.
    poll(lambda: strategy() == "NORMAL", timeout=100, interval=1, message="NORMAL after fill")
    stale_seen = []
    watched = [0]
    began = time.monotonic()
    phase = ["steady"]
    #: While the upstream's hint says no calls remain, renewals must wait for its reset;
    #: the backlog then needs a few seconds under the 10/5 s limit.
    held_until = [0.0]

    def watch_until(predicate, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            service = worker.get("/status").json()["services"]["cryptometer"]
            if (service.get("upstream_remaining_hint") or 0) <= 0 and \
                    service.get("upstream_hint_reset"):
                held_until[0] = max(held_until[0], time.monotonic() + 10
                                    + service["upstream_hint_reset"] - time.time())
            held = time.monotonic() < held_until[0]
            for k in critical:
                status = cache_status(worker, k)
                if status != "HIT" and not held:
                    stale_seen.append((k, round(time.monotonic() - began), phase[0], status))
            watched[0] += 1
            if predicate():
                return True
            time.sleep(1)
        raise AssertionError("condition not reached while watching freshness")

    steady_until = time.monotonic() + WINDOW  # a window of steady NORMAL: the fill leaves
    watch_until(lambda: time.monotonic() > steady_until, timeout=WINDOW + 5)  # the window
    # Lower the upstream's longest limit to just above what its window holds: the next
    # answers report only a few calls left (X-RateLimit-*) and budget use passes 80 %.
    in_window = sum(1 for t, _ in sim.stats(log=True)["call_log"]
                    if t > time.time() - WINDOW)
    sim.configure(limits={"cryptometer": [f"{in_window + 1}/{WINDOW}", *LIMITS[1:]]})
    squeezed_at = time.time()  # a call before it met the old limit
    phase[0] = f"squeezed at {round(time.monotonic() - began)} s to {in_window + 1}/{WINDOW}"
    # The upstream's hint holds only until its oldest call leaves the window (seconds), so
    # an evaluation must meet a fresh one: give it many chances on a loaded machine.
    watch_until(lambda: strategy() in ("CONSERVATIVE", "MINIMAL"), timeout=75)
    sim.configure(limits={"cryptometer": LIMITS})
    phase[0] = f"released at {round(time.monotonic() - began)} s"
    watch_until(lambda: strategy() == "NORMAL", timeout=60)
    stats = worker.stats()
    history = [(h["to"], h["reason"]) for h in stats["strategy_history"]["cryptometer"]]
    print(f"\nscheduler: {sim.stats()['accepted']} calls, hit rate {stats['hit_rate']}, "
          f"calls saved {stats['calls_saved']}, strategy history {history}")
    # The upstream lowered its limit without notice: only the calls already on their way
    # before its first answer told (one burst, at most the 10/5 s window) can meet a 429.
    logs = sim.stats(log=True)
    after = sorted(t for t, _ in logs["call_log"] + logs["reject_log"] if t > squeezed_at)
    told_by = after[0] + 0.5 if after else squeezed_at
    rejects = [(round(t - squeezed_at, 3), name) for t, name in logs["reject_log"]]
    print(f"429s, seconds after the squeeze: {rejects}")
    assert all(squeezed_at < t <= told_by for t, _ in logs["reject_log"]), rejects
    assert len(rejects) < 10, rejects
    # Critical keys are renewed just before they expire, except while the upstream's hint
    # holds every call back (the squeeze leaves it one call, and its reset can be a minute
    # away); a busy machine can still delay a renewal now and then: 95 %, not all.
    observations = len(critical) * watched[0]
    print(f"critical keys not HIT in {len(stale_seen)} of {observations} looks")
    assert len(stale_seen) <= 0.05 * observations, episodes(stale_seen)
    assert any(to in ("CONSERVATIVE", "MINIMAL") for to, _ in history)
    assert history[-1][0] == "NORMAL"
    # Once the hint has reset, every critical key is renewed.
    poll(lambda: all(cache_status(worker, k) == "HIT" for k in critical), timeout=60,
         interval=1, message="critical keys fresh again")
