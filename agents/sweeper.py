"""Tombstones for entries far past their TTL, so the cache changelog does not grow forever;
and expired in-flight marks pruned, so a burst of distinct keys leaves nothing behind.

The timer only finds candidates (it may not write tables); each becomes a sweep request
on ``internal.requests``, and admission deletes the entry on its owning partition if it
is still expired, which writes a tombstone to the changelog. A key whose sweep was sent
is not sent again for ``RESWEEP`` seconds: while admission works through a backlog, the
entries it has not reached yet must not be asked for again on every run.
"""

from __future__ import annotations

from quotacache.runtime import Runtime
from quotacache.streams.records import RefreshRequest

#: Seconds before a key whose sweep request went out (and is still expired) is asked again.
RESWEEP = 300.0


def register(rt: Runtime) -> None:
    sent: dict[str, float] = {}

    @rt.app.timer(rt.settings.cache.sweep_interval, name="sweep-expired")
    async def sweep_expired() -> None:
        rt.inflight.prune(rt.clock())
        await sweep_once(rt, sent)


async def sweep_once(rt: Runtime, sent: dict[str, float] | None = None) -> int:
    """Send a sweep request for each expired entry not asked for in the last ``RESWEEP``
    seconds (``sent``: when each key was, kept to the keys still expired)."""
    now = rt.clock()
    asked = {} if sent is None else sent
    expired = []
    for key, entry in rt.cache.scan():  # no await in here: see CacheTable.scan
        service, endpoint, symbol = key.split("/", 2)
        config = rt.settings.services.get(service)
        if config is None or endpoint not in config.endpoints:
            continue  # left by an older configuration: harmless, and not ours to judge
        if entry.is_expired(now, config.max_staleness):
            expired.append((key, RefreshRequest(service=service, endpoint=endpoint,
                                                symbol=symbol, reason="sweep")))
    still = {key: asked[key] for key, _ in expired
             if key in asked and now - asked[key] < RESWEEP}
    asked.clear()
    asked.update(still)
    due = [(key, request) for key, request in expired if key not in still]
    for key, request in due:
        asked[key] = now
        await rt.topics.send(rt.topics.requests, key, request)
    return len(due)
