"""Table wrappers on an app made as production makes it, without a broker.

Faust lets tables be written only inside stream iteration, so ``in_stream`` runs a
function as the body of a small agent (through ``Agent.test_context``) and returns its
result. The app uses Faust's memory store instead of RocksDB (each RocksDB open costs
tens of milliseconds), and its unstarted producer is told that global tables have one
partition.
"""

import pytest
from faust.types import TP

from quotacache.app import faust_app
from quotacache.settings import Settings


def settings_for(tmp_path, **services):
    return Settings(profiles=[], data_dir=tmp_path / "data",
                    broker={"url": "kafka://127.0.0.1:1", "partitions": 2},
                    services=services)


@pytest.fixture
def make_app(tmp_path):
    def make(settings=None):
        app = faust_app(settings or settings_for(tmp_path))
        app.conf.store = "memory://"
        app.producer.key_partition = lambda topic, key: TP(topic, 0)
        return app

    return make


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def in_stream(app):
    return stream_runner(app)


def stream_runner(app):
    """``await run(fn, partition=0)``: ``fn()`` inside stream iteration; its result."""

    @app.agent(app.channel(), name="probe")
    async def probe(stream):
        async for fn in stream:
            fn()

    async def run(fn, partition=0):
        result = []
        async with probe.test_context() as agent:
            await agent.put(lambda: result.append(fn()), partition=partition)
        return result[0]

    return run
