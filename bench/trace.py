"""A reproducible read trace and the oracle it is judged against.

Zipf popularity over N keys of the cryptometer endpoints, a steady rate with bursts, and
a volatility spike in which a few symbols are read far more. Times are seconds from the
start of the replay. The same seed gives the same trace, for every system measured.

The oracle minimum is one upstream call per key per TTL period in which it was read:
for each key, a call at its first read, then at the first read at least a TTL after the
last call. No cache can answer every read fresh with fewer calls.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass

#: Endpoint -> (TTL in seconds for the replay, takes a symbol). The profile's TTLs divided
#: by TIME_SCALE, so a 90 s replay spans several TTL periods of the busy keys.
TIME_SCALE = 5
ENDPOINTS = {
    "ticker": (120 / TIME_SCALE, True),
    "rapid_movements": (180 / TIME_SCALE, False),
    "ls_ratio": (300 / TIME_SCALE, True),
    "liquidation_data_v2": (300 / TIME_SCALE, True),
    "xtrades": (300 / TIME_SCALE, True),
    "large_trades_activity": (300 / TIME_SCALE, True),
    "open_interest": (600 / TIME_SCALE, True),
    "ai_screener": (1800 / TIME_SCALE, False),
}
SYMBOLS = ["BTC", "ETH", "SOL", "XRP", "DOGE", "ADA", "AVAX", "LINK", "DOT", "TRX",
           "LTC", "BCH"]


@dataclass(frozen=True)
class Read:
    at: float
    endpoint: str
    symbol: str  # "*" for endpoints without one

    @property
    def key(self) -> str:
        return f"{self.endpoint}/{self.symbol}"

    @property
    def ttl(self) -> float:
        return ENDPOINTS[self.endpoint][0]


@dataclass(frozen=True)
class Trace:
    reads: list[Read]
    duration: float
    spike: tuple[float, float, list[str]]  # start, end, symbols

    def oracle_calls(self) -> int:
        last_call: dict[str, float] = {}
        calls = 0
        for read in self.reads:
            previous = last_call.get(read.key)
            if previous is None or read.at - previous >= read.ttl:
                last_call[read.key] = read.at
                calls += 1
        return calls

    def keys(self) -> set[str]:
        return {read.key for read in self.reads}


def keys_by_popularity() -> list[tuple[str, str]]:
    """Every (endpoint, symbol) key, most popular first: big symbols, fast endpoints."""
    keys = []
    for endpoint, (_, takes_symbol) in ENDPOINTS.items():
        for rank, symbol in enumerate(SYMBOLS if takes_symbol else ["*"]):
            keys.append((rank + list(ENDPOINTS).index(endpoint) * 0.7, endpoint, symbol))
    return [(endpoint, symbol) for _, endpoint, symbol in sorted(keys)]


def build(seed: int = 7, duration: float = 90.0, rate: float = 30.0, zipf: float = 1.1,
          burst_every: float = 20.0, burst_length: float = 3.0, burst_factor: float = 4.0
          ) -> Trace:
    rng = random.Random(seed)
    keys = keys_by_popularity()
    weights = [1 / (rank + 1) ** zipf for rank in range(len(keys))]
    spike_start, spike_end = duration * 0.5, duration * 0.5 + 15.0
    spike_symbols = ["SOL", "DOGE", "AVAX"]
    spike_keys = [k for k in keys if k[1] in spike_symbols]
    reads: list[Read] = []
    at = 0.0
    while True:
        in_burst = at % burst_every < burst_length
        at += rng.expovariate(rate * (burst_factor if in_burst else 1.0))
        if at >= duration:
            break
        if spike_start <= at < spike_end and rng.random() < 0.6:
            endpoint, symbol = rng.choice(spike_keys)
        else:
            endpoint, symbol = rng.choices(keys, weights)[0]
        reads.append(Read(round(at, 4), endpoint, symbol))
    return Trace(reads, duration, (spike_start, spike_end, spike_symbols))


def summary(trace: Trace) -> dict[str, float]:
    per_key: dict[str, int] = defaultdict(int)
    for read in trace.reads:
        per_key[read.key] += 1
    return {"reads": len(trace.reads), "keys_read": len(per_key),
            "oracle_calls": trace.oracle_calls(), "duration_s": trace.duration}
