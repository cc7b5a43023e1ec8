"""How often each key is read: the demand that decides which refreshes are worth a call.

Each key's reads are an exponentially decayed count with time constant ``tau``: the rate
is ``count / tau`` reads per second, so a key read steadily at r/s settles at r, and a
key nobody reads any more fades towards zero instead of keeping its old rank. The
worker that owns a key counts its reads (every read of a key is answered there), so the
rates of a key's reads live in one process.

The map is bounded: past ``max_keys`` the keys with the least demand are forgotten
first, so any number of distinct keys that requests name costs at most ``max_keys``
entries.
"""

from __future__ import annotations

import math


class ReadRates:
    def __init__(self, tau: float = 60.0, max_keys: int = 100_000, prior: float = 1.0,
                 min_span: float = 5.0):
        self.tau = tau
        #: The shortest span a rate is measured over (a first read is not a burst).
        self.min_span = min_span
        self.max_keys = max_keys
        self.prior = prior
        #: name -> sum over its reads of ``exp((read_at - origin) / tau)``: a read adds one
        #: weight to every name it counts for, and the decayed count at ``now`` is the sum
        #: times ``exp(-(now - origin) / tau)``. One ``exp`` per read, not one per name
        #: (the hit path counts every read). ``origin`` moves up now and then (``_rebase``)
        #: so the weights stay far from overflowing.
        self._weights: dict[str, float] = {}
        self._last: dict[str, float] = {}  # key -> its last read
        self.origin = 0.0
        #: When the first read was counted: before ``tau`` has passed, a decayed count
        #: has seen only ``tau * (1 - exp(-age / tau))`` seconds of reads, not ``tau``.
        self.started: float | None = None

    def read(self, key: str, now: float) -> None:
        """Count one read of ``key`` at ``now`` (and of its endpoint and its symbol)."""
        if self.started is None:
            self.started = self.origin = now
        elif now - self.origin > REBASE * self.tau:
            self._rebase(now)
        weight = math.exp((now - self.origin) / self.tau)
        weights = self._weights
        for name in (key, *_groups(key), ALL):
            weights[name] = weights.get(name, 0.0) + weight
        self._last[key] = now
        if len(weights) > self.max_keys:
            self._forget()

    def rate(self, key: str, now: float) -> float:
        """Reads per second of ``key`` lately (0 for a key never read).

        A key read a few times says little on its own; its endpoint and its symbol, read
        across all their keys, say more. The estimate adds to the key's own count a
        ``prior`` weight of what they predict (endpoint share x symbol share x all
        reads), so a first read of a popular symbol on a busy endpoint ranks above a
        first read of a quiet one."""
        own = self._decayed(key, now)
        endpoint, symbol = _groups(key)
        total = self._decayed(ALL, now)
        predicted = (self._decayed(endpoint, now) * self._decayed(symbol, now) / total
                     if total else 0.0)
        return (own + self.prior * predicted) / (1.0 + self.prior) / self.span(now)

    def worth_renewing(self, key: str, now: float, ttl: float) -> bool:
        """Should ``key``'s data be renewed as it expires, read or not? Only if the
        renewal is expected to buy ``RENEW_READS`` fresh reads: at the key's rate, but
        at most one read per second of silence since its last read. A key whose reads
        stopped is renewed about once more, not for the minutes its decayed count takes
        to fade: at rest nothing is called for nobody (``bench/policy_sim.py``: the same
        fresh reads on every trace, a third of the calls after the reads stop)."""
        rate = self.rate(key, now)
        last = self._last.get(key)
        silence = now - last if last is not None else 0.0
        if silence > 0:
            rate = min(rate, 1.0 / silence)
        return rate * ttl >= RENEW_READS

    def span(self, now: float) -> float:
        """The seconds of reads a decayed count holds at ``now``: ``tau`` once warm, less
        in the first ``tau`` seconds (so early rates are not under-estimated)."""
        if self.started is None:
            return self.tau
        age = max(0.0, now - self.started)
        return max(self.tau * -math.expm1(-age / self.tau), self.min_span)

    def _decayed(self, name: str, now: float) -> float:
        weight = self._weights.get(name)
        if weight is None:
            return 0.0
        return weight * math.exp(-(now - self.origin) / self.tau)

    def _rebase(self, now: float) -> None:
        """Move ``origin`` to ``now``: every weight scaled down by the decay since."""
        scale = math.exp(-(now - self.origin) / self.tau)
        self._weights = {name: weight * scale for name, weight in self._weights.items()}
        self.origin = now

    def _forget(self) -> None:
        """Keep the busier half of the names (a weight ranks as its decayed count)."""
        weights = self._weights
        ranked = sorted(weights, key=weights.__getitem__, reverse=True)
        self._weights = {name: weights[name] for name in ranked[: self.max_keys // 2]}
        self._last = {key: at for key, at in self._last.items() if key in self._weights}

    def __len__(self) -> int:
        return len(self._weights)


ALL = "#all"
#: ``origin`` moves up once it is this many ``tau`` behind (exp(50) is far from overflow).
REBASE = 50.0
#: The fresh reads a renewal must be expected to buy (a call earns its price).
RENEW_READS = 1.0


def _groups(key: str) -> tuple[str, str]:
    """The endpoint and the symbol a key ``service/endpoint/symbol`` belongs to."""
    head, _, symbol = key.rpartition("/")
    return f"#endpoint:{head}", f"#symbol:{symbol}"
