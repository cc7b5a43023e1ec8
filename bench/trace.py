"""Reproducible read traces, and the limits and TTLs they are judged under.

A trace is a list of reads (seconds from the start of the replay, endpoint, symbol) plus
the limits and TTLs every system replaying it, and the optimum, must respect: carrying
them in the trace is what lets ``tight`` halve the limits for everyone at once.

Built-in traces (the same seed gives the same trace):

* ``zipf``: Zipf 1.1 popularity over 74 keys, a steady rate with bursts, and a volatility
  spike in which a few symbols are read far more;
* ``tight``: the same reads with every limit halved;
* ``longtail``: Zipf 0.8 over 362 keys (60 symbols);
* ``shift``: the popular symbols change halfway, when a spike hits formerly quiet ones.

A file trace is JSON lines ``{"at": s, "service", "endpoint", "symbol"}``.

Limits are the cryptometer profile's, in real seconds (the simulator enforces them in
real time); TTLs are the profile's divided by TIME_SCALE, so a 90 s replay spans several
TTL periods of the busy keys.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import random
import re
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from quotacache.services import CRYPTOMETER
from quotacache.units import parse_duration

SERVICE = "cryptometer"
TIME_SCALE = 5
#: Every endpoint of the profile -> its TTL in the replay.
TTLS: dict[str, float] = {name: parse_duration(spec["ttl"]) / TIME_SCALE
                          for name, spec in CRYPTOMETER["endpoints"].items()}
CRITICAL = frozenset(name for name, spec in CRYPTOMETER["endpoints"].items()
                     if spec["priority"] == "critical")
#: The endpoints of the built-in traces -> whether they take a symbol.
ENDPOINTS: dict[str, bool] = {
    "ticker": True, "rapid_movements": False, "ls_ratio": True, "liquidation_data_v2": True,
    "xtrades": True, "large_trades_activity": True, "open_interest": True,
    "ai_screener": False,
}
SYMBOLS = ["BTC", "ETH", "SOL", "XRP", "DOGE", "ADA", "AVAX", "LINK", "DOT", "TRX",
           "LTC", "BCH"]
LONGTAIL_SYMBOLS = SYMBOLS + [
    "BNB", "TON", "SHIB", "NEAR", "APT", "ARB", "OP", "SUI", "ATOM", "FIL", "ICP", "HBAR",
    "ETC", "XLM", "INJ", "UNI", "AAVE", "MKR", "RNDR", "IMX", "STX", "GRT", "SEI", "TIA",
    "PEPE", "WIF", "BONK", "FLOKI", "JUP", "PYTH", "LDO", "CRV", "SNX", "ALGO", "EGLD",
    "SAND", "MANA", "AXS", "GALA", "CHZ", "FTM", "KAS", "RUNE", "ORDI", "ENS", "DYDX", "ZEC",
    "XMR"]
#: Seconds a built-in trace lasts unless told.
DEFAULT_DURATION = 90.0
#: Seconds from a call to its data: the simulator's latency is uniform in 0.2-0.5 s.
LATENCY = 0.35
SYMBOL_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,30}|\*")


class Limit(NamedTuple):
    """At most ``calls`` upstream calls in any window of ``seconds`` seconds."""

    calls: int
    seconds: float

    @classmethod
    def parse(cls, text: str) -> Limit:
        calls, seconds = text.split("/")
        return cls(int(calls), float(seconds))

    def __str__(self) -> str:
        return f"{self.calls}/{self.seconds:g}"


@dataclass(frozen=True)
class Limits:
    """A service's limits: shared by all its endpoints, and each endpoint's own."""

    service: tuple[Limit, ...]
    endpoint: tuple[Limit, ...]

    @classmethod
    def profile(cls) -> Limits:
        return cls(tuple(Limit.parse(t) for t in CRYPTOMETER["limits"]),
                   tuple(Limit.parse(t) for t in CRYPTOMETER["endpoint_limits"]))

    def halved(self) -> Limits:
        def half(limits: tuple[Limit, ...]) -> tuple[Limit, ...]:
            return tuple(Limit(max(1, lim.calls // 2), lim.seconds) for lim in limits)
        return Limits(half(self.service), half(self.endpoint))

    def as_config(self) -> dict[str, list[str]]:
        """The ``limits`` and ``endpoint_limits`` of a service config (and of /_sim/config)."""
        return {"limits": [str(lim) for lim in self.service],
                "endpoint_limits": [str(lim) for lim in self.endpoint]}


@dataclass(frozen=True)
class Read:
    at: float
    endpoint: str
    symbol: str  # "*" for endpoints without one

    @property
    def key(self) -> str:
        return f"{self.endpoint}/{self.symbol}"


@dataclass(frozen=True)
class Trace:
    reads: list[Read]
    duration: float
    spike: tuple[float, float, list[str]] | None  # start, end, symbols
    name: str = "zipf"
    limits: Limits = field(default_factory=Limits.profile)
    ttls: Mapping[str, float] = field(default_factory=lambda: dict(TTLS))
    #: How the reads were drawn (built-in traces; a file trace's is unknown).
    process: Process | None = None

    def ttl(self, read: Read) -> float:
        return self.ttls[read.endpoint]

    def critical(self, read: Read) -> bool:
        return read.endpoint in CRITICAL

    def oracle_calls(self) -> int:
        """One call per key per TTL period in which it was read: for each key, a call at
        its first read, then at the first read at least a TTL after the last call. No cache
        answers every read fresh with fewer calls (limits ignored)."""
        last_call: dict[str, float] = {}
        calls = 0
        for read in self.reads:
            previous = last_call.get(read.key)
            if previous is None or read.at - previous >= self.ttl(read):
                last_call[read.key] = read.at
                calls += 1
        return calls

    def keys(self) -> set[str]:
        return {read.key for read in self.reads}


class TraceError(ValueError):
    """A trace that cannot be loaded; the message names the file and line."""


def keys_by_popularity(symbols: list[str] = SYMBOLS) -> list[tuple[str, str]]:
    """Every (endpoint, symbol) key, most popular first: big symbols, fast endpoints."""
    keys = []
    for index, (endpoint, takes_symbol) in enumerate(ENDPOINTS.items()):
        for rank, symbol in enumerate(symbols if takes_symbol else ["*"]):
            keys.append((rank + index * 0.7, endpoint, symbol))
    return [(endpoint, symbol) for _, endpoint, symbol in sorted(keys)]


#: In a built-in trace's spike, this share of the reads goes to the spiking symbols' keys.
SPIKE_SHARE = 0.6


@dataclass(frozen=True)
class Process:
    """How a built-in trace's reads are drawn: what a policy could know of the reads to
    come without seeing the draw (``bench.policy_sim --known-process``). Reads arrive as
    a Poisson process of ``rate`` a second (``burst_factor`` times that for
    ``burst_length`` seconds every ``burst_every``); each read picks a key by Zipf
    popularity, ``after`` replacing ``before`` from the spike on, and in the spike
    ``SPIKE_SHARE`` of the reads go to the spiking symbols' keys instead."""

    duration: float
    rate: float
    zipf: float
    burst_every: float
    burst_length: float
    burst_factor: float
    before: tuple[tuple[str, str], ...]
    after: tuple[tuple[str, str], ...]
    spike: tuple[float, float]
    spike_symbols: tuple[str, ...]

    @property
    def weights(self) -> list[float]:
        """Zipf weights of the keys, most popular first."""
        return [1 / (rank + 1) ** self.zipf for rank in range(len(self.before))]

    def in_burst(self, at: float) -> bool:
        return at % self.burst_every < self.burst_length

    def in_spike(self, at: float) -> bool:
        return self.spike[0] <= at < self.spike[1]

    def shifted(self, at: float) -> bool:
        """Whether ``after``'s popularity holds at ``at`` (from the spike's start on)."""
        return at >= self.spike[0]

    def keys_at(self, at: float) -> tuple[tuple[str, str], ...]:
        return self.after if self.shifted(at) else self.before

    @functools.cached_property
    def spiking(self) -> tuple[tuple[str, str], ...]:
        """The keys the spike's reads go to (the spike is past the shift), in popularity
        order: the sampler picks one."""
        return tuple(key for key in self.after if key[1] in self.spike_symbols)

    @functools.cached_property
    def _shares(self) -> tuple[dict[str, float], dict[str, float], frozenset[str]]:
        """Each key's share of the reads outside the spike, before and after its start
        ("endpoint/symbol" -> share), and the spiking keys: worked out once, as the
        oracles ask for intensities thousands of times a run."""
        weights = self.weights
        total = sum(weights)

        def shares(keys: tuple[tuple[str, str], ...]) -> dict[str, float]:
            return {f"{e}/{s}": w / total for (e, s), w in zip(keys, weights, strict=True)}

        return (shares(self.before), shares(self.after),
                frozenset(f"{e}/{s}" for e, s in self.spiking))

    def intensity(self, key: str, at: float) -> float:
        """Reads a second of ``key`` ("endpoint/symbol") expected at ``at``. The sampler
        switches to a burst's rate at its first read after the burst begins (about
        1/30 s late), so a burst's first tenth of a second holds a little fewer reads
        than this says; over a trace, each key's reads agree within 0.5 %."""
        if not 0.0 <= at < self.duration:
            return 0.0
        total = self.rate * (self.burst_factor if self.in_burst(at) else 1.0)
        before, after, spiking = self._shares
        share = (after if self.shifted(at) else before).get(key, 0.0)
        if self.in_spike(at):
            share = (1.0 - SPIKE_SHARE) * share + SPIKE_SHARE * (key in spiking) / len(spiking)
        return total * share

    def expected(self, key: str, start: float, end: float, step: float = 0.25) -> float:
        """Reads of ``key`` expected in ``[start, end)`` (a midpoint sum)."""
        steps = max(1, math.ceil((end - start) / step))
        width = (end - start) / steps
        return sum(self.intensity(key, start + (i + 0.5) * width) for i in range(steps)) * width


def build(seed: int = 7, duration: float = 90.0, rate: float = 30.0, zipf: float = 1.1,
          burst_every: float = 20.0, burst_length: float = 3.0, burst_factor: float = 4.0,
          symbols: list[str] = SYMBOLS, shifted: list[str] | None = None,
          spike_symbols: tuple[str, ...] = ("SOL", "DOGE", "AVAX"), name: str = "zipf"
          ) -> Trace:
    """Zipf reads with bursts and a spike from halfway for 15 s. With ``shifted``, the
    symbols' popularity order becomes ``shifted`` at the spike (``Process``)."""
    rng = random.Random(seed)
    before = tuple(keys_by_popularity(symbols))
    process = Process(duration, rate, zipf, burst_every, burst_length, burst_factor, before,
                      tuple(keys_by_popularity(shifted)) if shifted else before,
                      (duration * 0.5, duration * 0.5 + 15.0), spike_symbols)
    weights = process.weights
    reads: list[Read] = []
    at = 0.0
    while True:
        burst = process.in_burst(at)
        at += rng.expovariate(rate * (burst_factor if burst else 1.0))
        if at >= duration:
            break
        keys = process.keys_at(at)
        if process.in_spike(at) and rng.random() < SPIKE_SHARE:
            endpoint, symbol = rng.choice(process.spiking)
        else:
            endpoint, symbol = rng.choices(keys, weights)[0]
        reads.append(Read(round(at, 4), endpoint, symbol))
    return Trace(reads, duration, (*process.spike, list(spike_symbols)), name,
                 process=process)


def tight(seed: int = 7, duration: float = 90.0, rate: float = 30.0) -> Trace:
    zipf = build(seed, duration, rate)
    return dataclasses.replace(zipf, name="tight", limits=zipf.limits.halved())


def longtail(seed: int = 7, duration: float = 90.0, rate: float = 30.0) -> Trace:
    return build(seed, duration, rate, zipf=0.8, symbols=LONGTAIL_SYMBOLS, name="longtail")


def shift(seed: int = 7, duration: float = 90.0, rate: float = 30.0) -> Trace:
    """The second half reads the quiet half of the symbols most, starting with a spike."""
    shifted = SYMBOLS[6:] + SYMBOLS[:6]
    return build(seed, duration, rate, shifted=shifted, spike_symbols=("DOT", "LTC", "BCH"),
                 name="shift")


#: Name -> builder(seed, duration, rate).
BUILT_IN: dict[str, Callable[[int, float, float], Trace]] = {
    "zipf": build, "tight": tight, "longtail": longtail, "shift": shift}


def load(path: Path) -> Trace:
    """A JSON-lines trace, checked line by line: bad input names its line."""
    reads: list[Read] = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                reads.append(_read(json.loads(line)))
            except (ValueError, TypeError) as exc:
                raise TraceError(f"{path}:{number}: {exc}") from None
    if not reads:
        raise TraceError(f"{path}: no reads")
    reads.sort(key=lambda read: read.at)
    return Trace(reads, float(math.ceil(reads[-1].at)), None, path.stem)


def _read(item: object) -> Read:
    if not isinstance(item, dict):
        raise ValueError("not a JSON object")
    missing = {"at", "service", "endpoint", "symbol"} - item.keys()
    if missing:
        raise ValueError(f"missing {', '.join(sorted(missing))}")
    at, service, endpoint, symbol = (item[k] for k in ("at", "service", "endpoint", "symbol"))
    if isinstance(at, bool) or not isinstance(at, int | float) or not 0 <= at < math.inf:
        raise ValueError(f"at must be seconds >= 0, not {at!r}")
    if service != SERVICE:
        raise ValueError(f"service must be {SERVICE!r} (the benchmarked profile), not {service!r}")
    spec = CRYPTOMETER["endpoints"].get(endpoint) if isinstance(endpoint, str) else None
    if spec is None:
        raise ValueError(f"unknown endpoint {endpoint!r} of {SERVICE}")
    if spec["fan_out"]:
        raise ValueError(f"list endpoint {endpoint!r} fills many keys per call: not modelled")
    if not isinstance(symbol, str) or not SYMBOL_PATTERN.fullmatch(symbol):
        raise ValueError(f"symbol must be 1-30 letters, digits, '_' or '-', not {symbol!r}")
    if spec["symbol_param"] is None:
        symbol = "*"
    elif symbol == "*":
        raise ValueError(f"endpoint {endpoint!r} needs a symbol")
    return Read(float(at), endpoint, symbol.upper())


def named(name: str, seed: int = 7, duration: float | None = None,
          rate: float | None = None) -> Trace:
    """A built-in trace by name (90 s at 30 reads/s unless told), or a JSON-lines file."""
    if name in BUILT_IN:
        return BUILT_IN[name](seed, duration or DEFAULT_DURATION, rate or 30.0)
    path = Path(name)
    if not path.is_file():
        raise TraceError(f"{name!r} is neither a built-in trace ({', '.join(BUILT_IN)}) "
                         f"nor a file")
    if duration or rate:
        raise TraceError(f"duration and rate shape built-in traces, not the file {name}")
    return load(path)


def summary(trace: Trace) -> dict[str, object]:
    per_key: dict[str, int] = defaultdict(int)
    for read in trace.reads:
        per_key[read.key] += 1
    return {"name": trace.name, "reads": len(trace.reads), "keys_read": len(per_key),
            "critical_reads": sum(trace.critical(read) for read in trace.reads),
            "oracle_calls": trace.oracle_calls(), "duration_s": trace.duration,
            **trace.limits.as_config()}
