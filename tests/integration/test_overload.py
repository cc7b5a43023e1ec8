"""Ten times more demand than the budget, for two minutes, against the simulator.

The simulator enforces the same limits and must reject nothing; critical keys stay
fresh throughout (read every second, weighted 4x: their planned refreshes keep the slots
they need) while low-priority keys absorb the shortfall.
"""

from __future__ import annotations

import asyncio
import json
import random
import time

import httpx
import pytest

from quotacache.client import Client

from ..windows import max_in_any_window

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DURATION = 120.0
WARM_UP = 20.0
LIMITS, ENDPOINT_LIMITS = ["60/60", "10/5"], ["30/60"]
CRITICAL = [("ticker", s) for s in ("BTC", "ETH", "SOL")] + [("rapid_movements", "*")]
BULK_ENDPOINTS = {"ls_ratio": "high", "open_interest": "high", "xtrades": "high",
                  "ai_screener_analysis": "medium", "ohlcv": "medium",
                  "merged_trade_volume": "medium", "large_trades_activity": "low"}
BULK_SYMBOLS = [f"C{i:02d}" for i in range(40)]
CONFIG = "".join(
    f'[services.cryptometer.endpoints.{name}]\nttl = "{ttl}"\npriority = "{priority}"\n'
    for name, ttl, priority in
    [("ticker", "20s", "critical"), ("rapid_movements", "20s", "critical")]
    + [(name, "30s", priority) for name, priority in BULK_ENDPOINTS.items()])


async def test_ten_times_the_budget_for_two_minutes(deployment):
    deployment.configure(f"limits = {json.dumps(LIMITS)}\n"
                         f"endpoint_limits = {json.dumps(ENDPOINT_LIMITS)}\n" + CONFIG)
    deployment.simulator.configure(limits={"cryptometer": LIMITS},
                                   endpoint_limits={"cryptometer": ENDPOINT_LIMITS})
    worker = deployment.start_worker()
    bulk = [(e, s) for e in BULK_ENDPOINTS for s in BULK_SYMBOLS]
    # 280 bulk keys of 30 s TTL need ~560 calls a minute; the budget is 60: about ten
    # times more demand than budget.
    started = time.monotonic()
    samples: dict[str, list[str]] = {"critical": [], "high": [], "medium": [], "low": []}
    rng = random.Random(3)

    async def demand() -> None:
        async with Client(deployment.settings) as client:
            while time.monotonic() - started < DURATION:
                for endpoint, symbol in CRITICAL + bulk:
                    await client.request_refresh("cryptometer", endpoint, symbol)
                await asyncio.sleep(1.0)

    async def sample() -> None:
        async with httpx.AsyncClient(base_url=worker.url, timeout=10) as http:
            while time.monotonic() - started < DURATION:
                await asyncio.sleep(1.0)
                if time.monotonic() - started < WARM_UP:
                    continue
                for endpoint, symbol in CRITICAL:
                    r = await http.get(f"/cache/cryptometer/{endpoint}/{symbol}")
                    assert r.status_code in (200, 202)
                    samples["critical"].append(r.headers["X-Cache"])
                for endpoint, symbol in rng.sample(bulk, 20):
                    r = await http.get(f"/cache/cryptometer/{endpoint}/{symbol}")
                    assert r.status_code in (200, 202)
                    samples[BULK_ENDPOINTS[endpoint]].append(r.headers["X-Cache"])

    await asyncio.gather(demand(), sample())
    sim = deployment.simulator.stats(log=True)
    stats = worker.stats()
    times = [t for t, _ in sim["call_log"]]
    fresh = {p: round(s.count("HIT") / len(s), 3) for p, s in samples.items() if s}
    print(f"\noverload: {sim['accepted']} calls in {DURATION:.0f}s (budget 60/min), "
          f"rejected {sim['rejected']}, fresh by priority {fresh}, "
          f"blocks {stats['rate_limit_blocks']}")
    assert sim["rejected"] == 0
    assert max_in_any_window(times, 60) <= 60 and max_in_any_window(times, 5) <= 10
    # The budget is spent: 60 a minute, on the keys worth most (critical ones first).
    assert sim["accepted"] >= 100
    # Critical keys read every second are renewed just before they expire; a worker
    # starved of CPU (the whole suite on 2 cores) can be a moment late: 95 %, not 100 %.
    assert fresh["critical"] >= 0.95, samples["critical"]
    assert fresh["low"] < fresh["critical"] and fresh["medium"] < 1.0
