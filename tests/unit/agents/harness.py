"""A whole app without a broker: a test clock, a mock upstream, and the topics recorded.

``build_app`` wires every agent as in production. Only the edges are replaced: the
upstream is an ``httpx.MockTransport``, every topic's ``send`` records what would go to
the broker, the unstarted producer is told that global tables have one partition, tables
use Faust's memory store instead of RocksDB (conftest.py), and background tasks are kept
so a test can await them (``later`` records its delay and coroutine instead of sleeping).

Agents run through ``Agent.test_context``: ``put`` returns once the agent has handled the
event, since nothing an agent awaits here waits on a network.
"""

import asyncio
import inspect
import json
from contextlib import asynccontextmanager

import httpx

from quotacache.settings import Settings
from quotacache.streams.records import DataRecord, Record, parse_fetch_message
from quotacache.tasks import BackgroundTasks

START = 1_000_000.0

SERVICE = {
    "base_url": "http://upstream.test",
    "limits": ["4/60"],
    "headroom": 0.0,
    "arrival_jitter": 0.25,
    "refresh_margin": 0.5,
    "first_fetch_hold": 0,  # calls at once; test_fetch checks the hold
    "max_in_flight": 8,
    "retry_attempts": 2,
    "breaker_failures": 2,
    "max_staleness": 3600,
    "endpoints": {
        "ticker": {"path": "/ticker", "ttl": 60, "priority": "critical"},
        "ratio": {"path": "/ratio", "ttl": 300, "priority": "high"},
        "screener": {"path": "/screener", "ttl": 600, "priority": "medium",
                     "symbol_param": None},
        "coinlist": {"path": "/coins", "ttl": 900, "priority": "low",
                     "symbol_param": None, "fan_out": "symbol"},
    },
}


class Clock:
    def __init__(self, now=START):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


class Upstream:
    """Answers queued responses in order (then 200 ``{"price": 1}``); records requests."""

    def __init__(self):
        self.requests = []
        self.answers = []
        self.gate = None

    def answer(self, *responses):
        self.answers.extend(responses)

    def hold(self):
        """Calls wait (in flight) until ``release``."""
        self.gate = asyncio.Event()

    def release(self):
        self.gate.set()

    def __call__(self, request):
        self.requests.append(request)
        answer = self.answers.pop(0) if self.answers else httpx.Response(200, json={"price": 1})
        if self.gate is not None:
            return self._held(answer)
        return self._give(answer)

    async def _held(self, answer):
        await self.gate.wait()
        return self._give(answer)

    @staticmethod
    def _give(answer):
        if isinstance(answer, Exception):
            raise answer
        return answer


class Outbox:
    """Every message the app sent, per topic name: (key, value bytes)."""

    def __init__(self, rt):
        self.rt = rt
        self.messages = {}
        for topic in rt.topics.all():
            topic.send = self._recorder(topic.get_topic_name())

    def _recorder(self, name):
        async def send(key=None, value=None, **kwargs):
            self.messages.setdefault(name, []).append((key, value))
        return send

    def sent(self, topic):
        return self.messages.get(topic.get_topic_name(), [])

    def records(self, topic, model=None):
        """(key, parsed value) of what went to ``topic``."""
        parse = (lambda raw: model.model_validate_json(raw)) if model else parse_fetch_message
        return [(key, parse(value)) for key, value in self.sent(topic)]

    def dead_letters(self):
        return [json.loads(value)["reason"] for _, value in self.sent(self.rt.topics.dead_letter)]

    def clear(self):
        self.messages.clear()


class KeptTasks(BackgroundTasks):
    """BackgroundTasks whose spawned tasks a test can await (``settle``) or hold back
    (``hold``/``release``), and whose delayed ones wait for the test (``delayed``:
    (delay, coroutine) pairs, never started by themselves)."""

    def __init__(self):
        super().__init__()
        self.spawned = []
        self.delayed = []
        self.held = None

    def hold(self):
        """Start nothing until ``release`` (a worker too busy to run its tasks)."""
        self.held = []

    def release(self):
        held, self.held = self.held, None
        for coro in held:
            self.spawn(coro)

    def spawn(self, coro):
        if self.held is not None:
            self.held.append(coro)
            return None
        task = super().spawn(coro)
        self.spawned.append(task)
        return task

    def later(self, delay, coro):
        self.delayed.append((delay, coro))

    async def settle(self):
        """Await every spawned task, including those spawned while waiting."""
        while any(not t.done() for t in self.spawned):
            for task in list(self.spawned):
                await task


def settings_for(tmp_path, **service):
    return Settings(profiles=[], data_dir=tmp_path / "data",
                    broker={"url": "kafka://127.0.0.1:1", "partitions": 1},
                    scheduler={"default_endpoints": ["svc/ticker"]},
                    services={"svc": {**SERVICE, **service}})


class Feed:
    def __init__(self, agent):
        self.agent = agent

    async def put(self, value, key=None, topic=None):
        """Deliver one message as if read from ``topic``; str keys are sent as JSON."""
        if topic is not None:
            self.agent.original_channel = topic  # the name the event's message carries
        if isinstance(value, Record):
            value = value.to_json()
        if isinstance(key, str):
            key = json.dumps(key).encode()
        return await self.agent.put(value, key=key)


@asynccontextmanager
async def running(rt, name):
    async with rt.app.agents[name].test_context() as agent:
        yield Feed(agent)


def timer(rt, name):
    """The function behind one of the app's timers (Faust keeps them wrapped)."""
    for task in rt.app._app_tasks:
        if task.__name__ == name:
            return inspect.unwrap(task)
    raise LookupError(name)


async def store(rt, service, endpoint, symbol, data, fetched_at, ttl):
    """Put an entry in the cache the way production does: a data record, materialized."""
    record = DataRecord(service=service, endpoint=endpoint, symbol=symbol, data=data,
                        fetched_at=fetched_at, ttl=ttl)
    async with running(rt, "materialize") as materialize:
        await materialize.put(record, key=record.key, topic=rt.topics.data[(service, endpoint)])
    return record.key
