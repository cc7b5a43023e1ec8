"""Fixtures of the agent tests: an app built by build_app, without a broker (harness.py)."""

import httpx
import pytest
from faust.types import TP

from quotacache.app import build_app

from .harness import Clock, KeptTasks, Outbox, Upstream, settings_for


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def upstream():
    return Upstream()


@pytest.fixture
def make_rt(tmp_path, clock, upstream):
    """Build an app with the service's settings changed as given."""
    built = []

    def make(**service):
        rt = build_app(settings_for(tmp_path / str(len(built)), **service), clock=clock,
                       transports={"svc": httpx.MockTransport(upstream)})
        # Faust's memory store instead of RocksDB, whose every open costs ~50 ms (set before
        # any table is touched: tables create their store on first use).
        rt.app.conf.store = "memory://"
        # The producer is never started: tell Faust the one partition of global tables.
        rt.app.producer.key_partition = lambda topic, key: TP(topic, 0)
        rt.outbox = Outbox(rt)
        rt.tasks = KeptTasks()
        built.append(rt)
        return rt

    yield make
    for rt in built:  # coroutines a test left unstarted
        for coro in [c for _, c in rt.tasks.delayed] + (rt.tasks.held or []):
            coro.close()


@pytest.fixture
def rt(make_rt):
    return make_rt()
