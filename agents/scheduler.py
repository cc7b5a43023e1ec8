"""The unified scheduler: keeps monitored symbols fresh at the pace each service can afford.

* The leader's timer publishes, every ``scan_interval``, a refresh request with reason
  ``schedule`` for each monitored (symbol, endpoint); admission on the key's own
  partition fetches only keys that will pass their strategy's refresh point (TTL x the
  strategy's factor) before the next scan, so the leader needs no cache state and the
  limiter still has the last word on every call.
* Each service's owner re-evaluates the service's strategy from its budget use every
  ``evaluate_interval`` (``tables.strategy.adjust``) and records changes with reasons.
* The ``volatility`` topic marks symbols (or ``*``) AGGRESSIVE for
  ``volatility_duration`` when a score reaches ``volatility_threshold``.
"""

from __future__ import annotations

import logging

import faust

from quotacache.errors import InvalidSymbol, UnknownTarget
from quotacache.policy.strategy import Thresholds, adjust
from quotacache.runtime import Runtime
from quotacache.streams.records import BadMessage, RefreshRequest, VolatilitySignal, parse_message

log = logging.getLogger(__name__)


def thresholds(rt: Runtime) -> Thresholds:
    cfg = rt.settings.scheduler
    return Thresholds(conservative_above=cfg.conservative_above,
                      minimal_above=cfg.minimal_above, normal_below=cfg.normal_below,
                      min_dwell=cfg.min_dwell)


def scheduled_requests(rt: Runtime) -> list[tuple[str, RefreshRequest]]:
    """(cache key, request) for every monitored (symbol, endpoint); list endpoints once."""
    out: dict[str, RefreshRequest] = {}
    for symbol, endpoints in rt.control.monitored_endpoints().items():
        for ref in endpoints:
            service, _, endpoint = ref.partition("/")
            try:
                resolved, key = rt.resolve(service, endpoint, symbol)
            except (UnknownTarget, InvalidSymbol):  # removed from the config since
                continue
            out.setdefault(key, RefreshRequest(service=service, endpoint=endpoint,
                                               symbol=resolved, reason="schedule"))
    return list(out.items())


def register(rt: Runtime) -> None:
    app = rt.app
    cfg = rt.settings.scheduler

    @app.timer(cfg.scan_interval, on_leader=True, name="schedule-monitored")
    async def schedule_monitored() -> None:
        for key, request in scheduled_requests(rt):
            await rt.topics.send(rt.topics.requests, key, request)

    @app.timer(cfg.evaluate_interval, name="evaluate-strategies")
    async def evaluate_strategies() -> None:
        now = rt.clock()
        for service in rt.settings.services:
            if not rt.owns(service):
                continue
            state = rt.control.strategy(service)
            use = rt.budget_use(service, now)
            if adjust(state, use, now, thresholds(rt)):
                log.warning("strategy of %s -> %s (%s)", service, state.strategy, state.reason)
                rt.control.save_strategy(service, state)

    @app.agent(rt.topics.volatility, name="volatility")
    async def volatility(stream: faust.StreamT) -> None:
        async for event in stream.events():
            try:
                signal = parse_message(VolatilitySignal, event.value)
            except BadMessage as exc:
                await rt.dead_letter(event, str(exc))
                continue
            if signal.score >= cfg.volatility_threshold:
                now = rt.clock()
                until = now + cfg.volatility_duration
                if not rt.control.mark_volatile(signal.symbol, until, now):
                    await rt.dead_letter(event, "too many symbols are volatile at once")
                    continue
                rt.stats.count_event("volatility_signals")
                log.info("volatility %.2f on %s: AGGRESSIVE until %.0f", signal.score,
                         signal.symbol, until)
