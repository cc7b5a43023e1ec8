"""Upstream fetches under the rate limiter, on the partition that owns the service.

The ``internal.fetch`` topic is keyed by service, so one worker at a time handles all of
a service's orders, call feedback and ticks. Each event is processed inside stream
iteration, which is the only place Faust lets us write tables; so every event ends with
a *drain*: the service's queue is served in priority order for as long as the service's
health (pauses, hints, breaker) and every rate limit allow, each call counted in every
limit's window before it is sent. Work that must wait stays queued, and a timer sends
ticks while any queue is non-empty, so the drain runs again when budget returns.

The HTTP call runs in a task (bounded by ``max_in_flight``) so a slow upstream does not
stall the stream. Its result goes to the endpoint's data topic; how it ended goes back
to the service's partition as feedback (health is a table, written only here). Failed
calls are retried by sending the order again after a backoff (exponential, full jitter,
``policy.upstream``): a retry is a new order and passes the limiter like
any other. No call is ever made without the limiter's yes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import faust

from quotacache.errors import UpstreamError
from quotacache.policy.dispatch import Valuation, select_calls
from quotacache.policy.upstream import fan_out, rate_hint, retry_delay
from quotacache.runtime import Runtime
from quotacache.streams.records import (
    BadMessage,
    DataRecord,
    FetchOrder,
    FetchOutcome,
    ServiceFeedback,
    Tick,
    parse_fetch_message,
)
from quotacache.tables.ratelimit import ServiceBudget
from quotacache.upstream import UpstreamAnswer

log = logging.getLogger(__name__)

#: How often a worker wakes the fetch agent of each service with queued work.
TICK_INTERVAL = 0.25
#: Seconds between two sweeps of a queue for orders nobody reads (``drop_unread``).
SWEEP_EVERY = 1.0


class FetchDispatcher:
    """Queues, health and in-flight calls of the services this worker owns."""

    def __init__(self, rt: Runtime):
        self.rt = rt
        self.queues = rt.backlog.queues
        #: Set when an order is queued: wakes the ticks of an idle worker.
        self.orders_queued = asyncio.Event()
        #: The fetch topic's partition each service's messages come from (its owner).
        self.partition_of: dict[str, int] = {}
        #: Fetch partitions revoked by the rebalance under way.
        self.revoked: set[int] = set()
        #: When each service's queue was last swept of orders nobody reads any more.
        self.swept_at: dict[str, float] = {}

    # -- inside stream iteration -------------------------------------------------------
    async def on_order(self, order: FetchOrder) -> None:
        self.rt.backlog.first_order_at.setdefault(order.service, self.rt.clock())
        if order.key in self.rt.backlog.calling:
            return  # a call for this key is under way: its data will land for everyone
        queue = self.queues[order.service]
        if order.rerank and order.key not in queue:
            return  # a new rate for an order no longer waiting: its call went already
        queue.limit = self.rt.settings.service(order.service).queue_limit
        pushed_out = queue.add(order.key, order)
        self.orders_queued.set()
        for dropped in pushed_out:
            await self.finish(dropped, "dropped", "queue full")

    def on_feedback(self, feedback: ServiceFeedback) -> None:
        config = self.rt.settings.service(feedback.service)
        health = self.rt.health.get(feedback.service)
        before = health.to_dict()
        if feedback.outcome == "success":
            health.on_success(feedback.at)
        elif feedback.outcome == "failure":
            health.on_failure(feedback.at, config.breaker_failures)
        else:
            health.on_rate_limited(feedback.at, feedback.retry_after, config.default_retry_after)
            self.rt.backlog.confirm_pause(feedback.service)
        if feedback.remaining is not None and feedback.reset_at is not None:
            health.on_hint(max(0, feedback.remaining - self.calls_after(feedback)),
                           feedback.reset_at, feedback.limit, at=feedback.at)
        if health.to_dict() != before:  # a success of a healthy service changes nothing
            self.rt.health.put(feedback.service, health)

    def calls_after(self, feedback: ServiceFeedback) -> int:
        """Calls that may spend what the answer reported in ``feedback`` as remaining:
        those under way (the upstream may not have counted them yet) and those decided
        since the answer came back, answered by now or not."""
        under_way = self.rt.backlog.under_way[feedback.service]
        answered_at = round(feedback.at, 3)
        since = sum(1 for t in self.rt.limiter.decided(feedback.service)
                    if t >= answered_at)
        since_under_way = sum(1 for t in under_way if round(t, 3) >= answered_at)
        return len(under_way) + max(0, since - since_under_way)

    def valuation(self, service: str) -> Valuation:
        config = self.rt.settings.service(service)
        return Valuation.of(config, latency=self.rt.backlog.latency[service],
                            hold_until=self.rt.backlog.first_order_at.get(service, 0.0)
                            + config.first_fetch_hold)

    async def drain(self, service: str) -> None:
        """Make the calls worth most while health, limits and concurrency allow."""
        rt = self.rt
        config = rt.settings.service(service)
        queue = self.queues[service]
        now = rt.clock()
        valuation = self.valuation(service)
        if now - self.swept_at.get(service, float("-inf")) >= SWEEP_EVERY:  # a scan of
            self.swept_at[service] = now  # the queue: not on every order of a flood
            for order in queue.drop_unread(now, dict(valuation.ttl_of)):
                rt.stats.count("dropped_unread", f"{service}/{order.endpoint}")
                await self.finish(order, "dropped", "nobody reads the key any more")
        if not queue:
            return
        if rt.backlog.paused(service, now):
            return
        health = rt.health.get(service)
        free_slots = config.max_in_flight - self.rt.backlog.calls_in_flight(service)
        before = health.to_dict()
        def waiting(key: str) -> int:  # here, or on the key's owner (its order says)
            queued, here = queue.get(key), rt.waiters.count(key)
            return here if queued is None else queued.readers_waiting(
                here, now + valuation.latency)

        selection = select_calls(queue, health, ServiceBudget(rt.limiter, service), now,
                                 service=service, cooldown=config.breaker_cooldown,
                                 free_slots=free_slots, valuation=valuation, waiting=waiting)
        if selection.calls and health.to_dict() != before:
            rt.health.put(service, health)
        for queued in selection.calls:
            queue.remove(queued.key)
            self._launch(queued.order, now)
        for queued in selection.blocked:
            if not queued.blocked_counted:
                queued.blocked_counted = True
                rt.stats.count("rate_limit_blocks", f"{service}/{queued.order.endpoint}")

    def room_for(self, order: FetchOrder) -> bool:
        """Could the order's endpoint take a call now? When it cannot, the order changed
        nothing a drain could use (calls that free room, and time, are the ticks' and
        the calls' ends' to drain for): a flood of orders for new keys on a full
        endpoint costs no scan of the queue each."""
        return ServiceBudget(self.rt.limiter, order.service).check(
            order.endpoint, self.rt.clock()).allowed

    def _launch(self, order: FetchOrder, decided_at: float) -> None:
        self.rt.backlog.under_way[order.service].append(decided_at)
        self.rt.backlog.calling.add(order.key)
        self.rt.tasks.spawn(self.call(order, decided_at))

    def wants_tick(self, service: str, now: float) -> bool:
        """Could a drain make a call now? A call eligible now (or a planned one about to
        be), a free call slot, health that admits calls and a limit with room for one of
        them: a tick that cannot change anything is not sent (every tick is a record).
        A call that ends drains the queue anyway."""
        queue = self.queues.get(service)
        config = self.rt.settings.service(service)
        if (not queue or self.rt.backlog.calls_in_flight(service) >= config.max_in_flight
                or self.rt.backlog.paused(service, now)):
            return False
        valuation = self.valuation(service)
        endpoints = {q.order.endpoint for q in queue.entries()
                     if valuation.eligible(q, now + TICK_INTERVAL)}
        if not endpoints:
            return False
        if not self.rt.health.get(service).admits(now, config.breaker_cooldown)[0]:
            return False
        budget = ServiceBudget(self.rt.limiter, service)
        return any(budget.check(endpoint, now).allowed for endpoint in endpoints)

    # -- outside stream iteration (tasks) ------------------------------------------------
    async def call(self, order: FetchOrder, decided_at: float) -> None:
        """Make the one call the limiter allowed; publish its data, or retry, or give up.

        The limiter counted the call at ``decided_at`` and its bound holds only if the
        call leaves within half the arrival jitter of that (policy/limits.py). A worker
        too busy to send it in time does not send it: the order is decided again (the
        slot it was counted in stays spent, which is safe)."""
        rt = self.rt
        name = f"{order.service}/{order.endpoint}"
        started = rt.clock()
        if started - decided_at > rt.settings.service(order.service).arrival_jitter / 2:
            rt.backlog.under_way[order.service].remove(decided_at)
            rt.backlog.calling.discard(order.key)
            rt.stats.count("late_calls", name)
            log.warning("call of %s not sent: %.3f s after its slot", name,
                        started - decided_at)
            await rt.topics.send(rt.topics.fetch, order.service, order)
            return
        rt.stats.count("upstream_calls", name)
        try:
            answer = await rt.upstreams[order.service].fetch(order.endpoint, order.symbol,
                                                             started)
            rt.backlog.observe_latency(order.service, rt.clock() - started)
        except UpstreamError as exc:
            failure: UpstreamError | None = exc
        except Exception as exc:  # a bug must not lose the order silently
            log.exception("fetch of %s failed", name)
            rt.failures.record("the upstream call", exc)
            failure = UpstreamError(f"{name}: {type(exc).__name__}")
        else:
            failure = None
        finally:
            rt.backlog.under_way[order.service].remove(decided_at)
            rt.backlog.calling.discard(order.key)
        if failure is None or failure.status is not None:  # answered: the upstream counted it
            rt.limiter.answered(order.service, order.endpoint, decided_at, rt.clock())
        if failure is not None:
            await self.failed(order, failure)
        else:
            await self.succeeded(order, answer)

    async def succeeded(self, order: FetchOrder, answer: UpstreamAnswer) -> None:
        rt = self.rt
        now = rt.clock()
        spec = rt.settings.service(order.service).endpoints[order.endpoint]
        topic = rt.topics.data[(order.service, order.endpoint)]
        for symbol, data in fan_out(order.symbol, answer.data, spec.fan_out):
            record = DataRecord(service=order.service, endpoint=order.endpoint, symbol=symbol,
                                data=data, fetched_at=now, ttl=spec.ttl)
            await rt.topics.send(topic, record.key, record)
        # ``at`` is when the answer came: calls decided since spend its hint.
        await self.feedback(order, "success", at=now, **(rate_hint(answer.headers, now) or {}))

    async def failed(self, order: FetchOrder, exc: UpstreamError) -> None:
        rt = self.rt
        name = f"{order.service}/{order.endpoint}"
        config = rt.settings.service(order.service)
        rt.stats.count("errors", name)
        log.warning("upstream call failed: %s", exc)
        if exc.status == 429:
            rt.stats.count("rate_limited", name)
            # The pause this feedback will store, kept here until the table holds it.
            health = rt.health.get(order.service)
            health.on_rate_limited(rt.clock(), exc.retry_after, config.default_retry_after)
            rt.backlog.pause(order.service, health.paused_until)
            await self.feedback(order, "rate_limited", retry_after=exc.retry_after)
            await rt.topics.send(rt.topics.fetch, order.service, order)  # waits out the pause
            return
        await self.feedback(order, "failure")
        now = rt.clock()
        delay = retry_delay(order.attempt, config.retry_base, config.retry_cap)
        if (exc.retryable and order.attempt < config.retry_attempts
                and now + delay - order.requested_at <= config.retry_deadline):
            rt.stats.count("retries", name)
            retry = order.model_copy(update={"attempt": order.attempt + 1})
            rt.tasks.later(delay, rt.topics.send(rt.topics.fetch, order.service, retry))
            return
        await self.finish(order, "error", str(exc))

    async def feedback(self, order: FetchOrder, outcome: str, at: float | None = None,
                       **details: Any) -> None:
        record = ServiceFeedback(service=order.service, endpoint=order.endpoint,
                                 outcome=outcome, at=self.rt.clock() if at is None else at,
                                 **details)
        await self.rt.topics.send(self.rt.topics.fetch, order.service, record)

    def on_revoked(self, revoked: Iterable[Any]) -> None:
        """Remember the fetch partitions a rebalance took (all of them: Faust's rebalances
        are eager); ``hand_over`` settles them once the new assignment is known."""
        topic = self.rt.topics.fetch.get_topic_name()
        self.revoked |= {tp.partition for tp in revoked if tp.topic == topic}

    async def hand_over(self, assigned: Iterable[Any]) -> int:
        """The services filed on fetch partitions that were revoked and not assigned
        again are another worker's now. Their queued orders go to it, through the fetch
        topic (keyed by service, as every order): kept here they would never be called
        (only the owner drains a service), and their ticks would wake this worker 4 times
        a second for ever. A service that stays keeps its queue. Returns how many orders
        went."""
        topic = self.rt.topics.fetch.get_topic_name()
        lost = self.revoked - {tp.partition for tp in assigned if tp.topic == topic}
        self.revoked = set()
        orders: list[FetchOrder] = []
        for service in [s for s, p in self.partition_of.items() if p in lost]:
            del self.partition_of[service]  # every moved queue goes before any await
            queue = self.queues.pop(service, None)
            orders += [q.order.model_copy(update={"rate": q.measured, "rate_at": q.measured_at,
                                                  "rerank": False})
                       for q in (queue.entries() if queue is not None else ())]
        sent = 0
        for order in orders:
            try:
                await self.rt.topics.send(self.rt.topics.fetch, order.service, order)
                sent += 1
            except Exception:  # the rest must still go; a lost one comes again from reads
                log.exception("could not hand %s over to its service's new owner", order.key)
        if orders:
            log.info("a rebalance moved %d queued orders to their services' new owners", sent)
        return sent

    async def finish(self, order: FetchOrder, outcome: str, detail: str) -> None:
        """Tell the key's partition that this fetch ended without data (clears in-flight)."""
        record = FetchOutcome(service=order.service, endpoint=order.endpoint,
                              symbol=order.symbol, outcome=outcome, detail=detail,
                              at=self.rt.clock())
        await self.rt.topics.send(self.rt.topics.outcomes, order.key, record)


def register(rt: Runtime) -> None:
    dispatcher = FetchDispatcher(rt)

    @rt.app.agent(rt.topics.fetch, name="fetch")
    async def fetch(stream: faust.StreamT) -> None:
        async for event in stream.events():
            try:
                item = parse_fetch_message(event.value)
                if item.service not in rt.settings.services:
                    raise BadMessage(f"unknown service {item.service!r}")
                dispatcher.partition_of[item.service] = event.message.partition
                if isinstance(item, FetchOrder):
                    rt.resolve_message(item.service, item.endpoint, item.symbol)
            except BadMessage as exc:
                await rt.dead_letter(event, str(exc))
                continue
            try:
                if isinstance(item, FetchOrder):
                    await dispatcher.on_order(item)
                    if not dispatcher.room_for(item):
                        continue  # a drain could call nothing more: the ticks look again
                elif isinstance(item, ServiceFeedback):
                    dispatcher.on_feedback(item)
                await dispatcher.drain(item.service)
            except Exception as exc:  # keep the agent alive; the order may come again
                log.exception("fetch agent failed on %s", item)
                rt.failures.record("agent fetch", exc)

    async def ticks() -> None:
        """One round: a tick to each service whose drain could make a call now."""
        now = rt.clock()
        for service in list(dispatcher.queues):
            if dispatcher.wants_tick(service, now):
                await rt.topics.send(rt.topics.fetch, service, Tick(service=service))

    async def fetch_ticks() -> None:
        """``ticks`` every TICK_INTERVAL while an order is queued; with none, it waits for
        one (a timer would wake an idle worker 4 times a second for nothing)."""
        while not rt.app.should_stop:
            if not any(dispatcher.queues.values()):
                dispatcher.orders_queued.clear()
                await dispatcher.orders_queued.wait()
            await asyncio.sleep(TICK_INTERVAL)
            try:
                await ticks()
            except Exception as exc:  # the next round tries again
                log.exception("fetch ticks failed")
                rt.failures.record("fetch ticks", exc)

    fetch_ticks.round = ticks  # type: ignore[attr-defined]  # one round, for tests
    rt.app.task(fetch_ticks)

    async def revoked(sender: Any, revoked: Iterable[Any], **kwargs: Any) -> None:
        dispatcher.on_revoked(revoked)

    async def assigned(sender: Any, assigned: Iterable[Any], **kwargs: Any) -> None:
        try:
            await dispatcher.hand_over(assigned)
        except Exception:  # a rebalance must go on; the orders come again from reads
            log.exception("could not hand queued orders over after a rebalance")

    rt.app.on_partitions_revoked.connect(revoked)
    rt.app.on_partitions_assigned.connect(assigned)
