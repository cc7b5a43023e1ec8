"""Tombstones for entries far past their TTL, so the cache changelog does not grow forever;
and expired in-flight marks pruned, so a burst of distinct keys leaves nothing behind.

The timer only finds candidates (it may not write tables); each becomes a sweep request
on ``internal.requests``, and admission deletes the entry on its owning partition if it
is still expired, which writes a tombstone to the changelog.
"""

from __future__ import annotations

from quotacache.runtime import Runtime
from quotacache.streams.records import RefreshRequest


def register(rt: Runtime) -> None:
    @rt.app.timer(rt.settings.cache.sweep_interval, name="sweep-expired")
    async def sweep_expired() -> None:
        rt.inflight.prune(rt.clock())
        await sweep_once(rt)


async def sweep_once(rt: Runtime) -> int:
    now = rt.clock()
    expired = []
    for key, entry in rt.cache.scan():  # no await in here: see CacheTable.scan
        service, endpoint, symbol = key.split("/", 2)
        config = rt.settings.services.get(service)
        if config is None or endpoint not in config.endpoints:
            continue  # left by an older configuration: harmless, and not ours to judge
        if entry.is_expired(now, config.max_staleness):
            expired.append((key, RefreshRequest(service=service, endpoint=endpoint,
                                                symbol=symbol, reason="sweep")))
    for key, request in expired:
        await rt.topics.send(rt.topics.requests, key, request)
    return len(expired)
