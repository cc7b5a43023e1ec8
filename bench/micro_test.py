"""Micro-benchmarks (pytest-benchmark): the limiter's decision and a cache read.

    python -m pytest bench/micro_test.py --benchmark-only

Not collected by the test suite (it lives outside tests/).
"""

from __future__ import annotations

import time

from quotacache.policy.freshness import CacheEntry, classify
from quotacache.policy.limits import Scope, decide
from quotacache.settings import RateLimit, load_settings


def test_limiter_decision(benchmark):
    """Service and endpoint limits of cryptometer, a minute of recorded calls."""
    service = Scope("cryptometer", tuple(RateLimit.model_validate(text)
                                         for text in ("100/60", "20/10", "10/5")))
    endpoint = Scope("cryptometer/ticker", (RateLimit.model_validate("10/60"),))
    now = time.time()
    sent = [now - i for i in range(0, 60, 8)]  # eight calls in the last minute

    def times(scope: str) -> list[float]:
        return sent

    decision = benchmark(decide, [service, endpoint], times, now)
    assert decision.allowed


def test_rocksdb_cache_read(benchmark, tmp_path):
    from rocksdict import Rdict

    db = Rdict(str(tmp_path / "cache"))
    entry = CacheEntry({"price": 64000.5, "symbol": "BTC"}, time.time(), 120.0)
    for i in range(1000):
        db[f"cryptometer/ticker/S{i}"] = entry.to_dict()
    settings = load_settings(None, profiles=["cryptometer"])
    staleness = settings.service("cryptometer").max_staleness

    def read() -> str:
        found = CacheEntry.from_dict(db.get("cryptometer/ticker/S500"))
        return classify(found, time.time(), staleness).value

    assert benchmark(read) == "HIT"
    db.close()
