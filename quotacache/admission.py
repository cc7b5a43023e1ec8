"""Admission of a refresh request on the worker that owns its key: skip what is fresh
or already ordered, else order a fetch from the service's owner.

Two paths admit: the ``admit`` agent (``agents/refresh.py``), for requests that arrive
on a topic, and a read on the key's owner (``web/reads.py``), which admits its own
refresh in place rather than through ``internal.requests`` (a topic hop less before its
first answer, and a record less per miss). Both run on the owner, in one event loop, so
the in-flight marks they share decide once for each key. A read admits in place only
while its worker's assignment is settled and its tables recovered: during a rebalance
the cache may lack entries the changelog holds, so its request waits on the topic, as
the agent does. Sweeps delete table entries and so stay on the agent's path (table writes
happen inside stream iteration).
"""

from __future__ import annotations

from quotacache.policy.freshness import CacheEntry
from quotacache.policy.strategy import effective
from quotacache.runtime import Runtime
from quotacache.settings import Priority
from quotacache.streams.records import FetchOrder, RefreshRequest


def scheduled_refresh_due(rt: Runtime, entry: CacheEntry, request: RefreshRequest,
                          now: float) -> bool:
    """Due when the key will pass its strategy's refresh point before the next scan.

    The refresh point is TTL x the strategy's factor, so under NORMAL a key is renewed as
    it expires. Critical data keeps its TTL under every strategy (its factor never
    exceeds 1): budget pressure is absorbed by the lower priorities.
    """
    state = rt.control.strategy(request.service)
    strategy = effective(state, rt.control.volatile_until(request.symbol, now), now)
    factor = rt.settings.scheduler.factors[strategy.value]
    spec = rt.settings.service(request.service).endpoints[request.endpoint]
    if spec.priority is Priority.CRITICAL:
        factor = min(factor, 1.0)
    point = entry.ttl * factor
    return entry.age(now) + rt.settings.scheduler.scan_interval >= point


async def admit_request(rt: Runtime, request: RefreshRequest, symbol: str, key: str) -> None:
    """Decide one request on the worker that owns ``key``'s partition."""
    now = rt.clock()
    config = rt.settings.service(request.service)
    endpoint_name = f"{request.service}/{request.endpoint}"
    entry = rt.cache.get(key)
    if request.reason == "sweep":
        if entry is not None and entry.is_expired(now, config.max_staleness):
            rt.cache.delete(key)
        return
    if request.reason == "schedule":
        if entry is not None and not scheduled_refresh_due(rt, entry, request, now):
            return  # a scheduled look, not a request for data: nothing saved, nothing spent
    elif not request.force and entry is not None and entry.is_fresh(now):
        rt.stats.count("calls_saved", endpoint_name)
        return
    spec = config.endpoints[request.endpoint]
    rate = rt.demand.rate(key, now)
    if request.reason != "read":  # asked for, not read: worth a read per TTL, so it is
        rate = max(rate, 1.0 / spec.ttl)  # fetched when the budget has room for it
    rerank = False
    readers_until = rt.waiters.until(key)
    if not rt.inflight.claim(key, now, rate, readers_until):
        # Waiting already; a key read far more than when it was ordered, or one a reader
        # now waits for while its order says none does, is ranked again.
        if not (request.reason == "read"
                and rt.inflight.regrade(key, rate, now, readers_until)):
            rt.stats.count("calls_saved", endpoint_name)
            return
        rerank = True
    # A list endpoint is fetched once, as a whole, for all the symbols it fills.
    order = FetchOrder(service=request.service, endpoint=request.endpoint,
                       symbol="*" if spec.fan_out else symbol,
                       priority=request.priority or spec.priority, reason=request.reason,
                       requested_at=now, rate=rate, force=request.force, rerank=rerank,
                       fresh_until=entry.fetched_at + entry.ttl if entry else None,
                       readers_until=readers_until)
    try:
        await rt.topics.send(rt.topics.fetch, request.service, order)
    except BaseException:
        if not rerank:  # no order behind the mark: the next request must try again
            rt.inflight.release(key)
        raise
