"""Messages to and from the fetch agent, for its tests."""

from quotacache.streams.records import (
    DataRecord,
    FetchOrder,
    FetchOutcome,
    ServiceFeedback,
)

from .harness import SERVICE, START, running

PRIORITIES = {name: spec["priority"] for name, spec in SERVICE["endpoints"].items()}


def order(endpoint="ticker", symbol="BTC", **fields):
    fields = {"priority": PRIORITIES[endpoint], "reason": "request", "requested_at": START,
              **fields}
    return FetchOrder(service="svc", endpoint=endpoint, symbol=symbol, **fields)


def feedback(outcome, **fields):
    return ServiceFeedback(service="svc", endpoint="ticker", outcome=outcome,
                           at=fields.pop("at", START), **fields)


async def fetch(rt, *messages):
    """Deliver messages to the fetch agent, then let the calls it started finish."""
    async with running(rt, "fetch") as agent:
        for message in messages:
            await agent.put(message, key="svc")
    await rt.tasks.settle()


def data(rt, endpoint="ticker"):
    return rt.outbox.records(rt.topics.data[("svc", endpoint)], DataRecord)


def outcomes(rt):
    return rt.outbox.records(rt.topics.outcomes, FetchOutcome)


def on_fetch_topic(rt, kind):
    return [message for _, message in rt.outbox.records(rt.topics.fetch)
            if message.kind == kind]
