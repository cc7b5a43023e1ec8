"""Admission of refresh requests: validate, skip what is fresh or in flight, order a fetch.

One agent reads both ``refresh`` (public, keyed any way) and ``internal.requests`` (keyed
by cache key). A refresh message already keyed by its cache key in JSON sits on the
partition that owns the key and is admitted in place; any other is re-keyed once through
``internal.requests``. Admission (``quotacache/admission.py``) reads the cache table and
the in-flight marks of the key's own partition, so one worker decides for each key and
duplicates cost no call; a read on that worker admits its refresh in place. Sweep
requests (tombstones for entries past ``max_staleness``) also arrive here, because
table deletes must happen inside stream iteration on the owning partition.
"""

from __future__ import annotations

import json
import logging

import faust

from quotacache.admission import admit_request
from quotacache.runtime import Runtime
from quotacache.streams.records import BadMessage, RefreshRequest, parse_message

log = logging.getLogger(__name__)


def register(rt: Runtime) -> None:
    topics = rt.topics
    refresh_topic = topics.refresh.get_topic_name()

    @rt.app.agent(topics.raw(topics.refresh, topics.requests), name="admit")
    async def admit(stream: faust.StreamT) -> None:
        async for event in stream.events():
            message = event.message
            try:
                request = parse_message(RefreshRequest, event.value)
                symbol, key = rt.resolve_message(request.service, request.endpoint,
                                                 request.symbol)
            except BadMessage as exc:
                await rt.dead_letter(event, str(exc))
                continue
            if message.topic == refresh_topic and event.key != json.dumps(key).encode():
                await topics.send(topics.requests, key, request.model_copy(
                    update={"symbol": symbol}))
                continue
            try:
                await admit_request(rt, request, symbol, key)
            except Exception as exc:  # one bad request must not stop the agent
                log.exception("admission of %s failed", key)
                rt.failures.record("agent admit", exc)
                await rt.dead_letter(event, f"admission failed: {type(exc).__name__}")
