"""Cluster-wide control state: monitored symbols, strategies, volatile symbols.

Small global tables (every worker holds all of them, recovered from their changelogs at
start, so they survive restarts). They use the memory store and the key partitioner, so
views and timers may write them directly: RocksDB tables in Faust can only be written
inside stream iteration, and these are written from HTTP requests and timers. Each has
one partition, as Faust advises for global tables.
"""

from __future__ import annotations

from typing import Any

import faust

from quotacache.policy.strategy import Strategy, StrategyState

#: Symbols that may be volatile at once (expired ones are pruned first).
MAX_VOLATILE = 1_000
#: Symbols that may be monitored at once.
MAX_MONITORED = 5_000


class ControlTables:
    def __init__(self, app: faust.App):
        def table(name: str, help: str) -> Any:
            # Built directly: app.GlobalTable() drops the store and partitioner options;
            # and the store URL needs a host (a bare "memory://" is falsy to yarl).
            return app.tables.add(app.conf.GlobalTable(
                app, name=name, partitions=1, recovery_buffer_size=1, standby_buffer_size=1,
                store="memory://localhost/", use_partitioner=True, is_global=True,
                beacon=app.tables.beacon, help=help))

        self.monitored = table("monitored-symbols", "symbol -> endpoints kept fresh")
        self.strategies = table("strategies", "service -> strategy state")
        self.volatile = table("volatile-symbols", "symbol -> AGGRESSIVE until")

    def strategy(self, service: str) -> StrategyState:
        return StrategyState.from_dict(self.strategies.get(service))

    def save_strategy(self, service: str, state: StrategyState) -> None:
        self.strategies[service] = state.to_dict()

    def volatile_until(self, symbol: str, now: float) -> float | None:
        """Until when ``symbol`` (or the whole market) is volatile, if it is now."""
        until = max(float(self.volatile.get(symbol) or 0), float(self.volatile.get("*") or 0))
        return until if until > now else None

    def mark_volatile(self, symbol: str, until: float, now: float) -> bool:
        """Make ``symbol`` volatile until ``until``; False when too many symbols are
        volatile already (expired marks are deleted first, so the table stays small)."""
        if symbol not in self.volatile and len(self.volatile) >= MAX_VOLATILE:
            for old, old_until in list(self.volatile.items()):
                if float(old_until) <= now:
                    del self.volatile[old]
            if len(self.volatile) >= MAX_VOLATILE:
                return False
        self.volatile[symbol] = until
        return True

    def monitored_endpoints(self) -> dict[str, list[str]]:
        return {str(symbol): list(endpoints) for symbol, endpoints in self.monitored.items()}

    def current(self, service: str) -> Strategy:
        return Strategy(self.strategy(service).strategy)
