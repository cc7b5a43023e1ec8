"""The pipeline's failures: when /health calls them a problem, and a real agent crash
counted through the app's hook (an in-memory channel: no broker)."""

import asyncio

import faust

from quotacache.app import App
from quotacache.failures import Failures
from quotacache.redact import MASK, install
from tests.unit.agents.harness import Clock


def test_a_part_failing_three_times_within_the_window_is_a_problem_until_it_stops():
    clock = Clock()
    failures = Failures(clock)
    for _ in range(2):
        failures.record("agent admit", KeyError("x"))
        clock.now += 20
    assert failures.problem() is None
    failures.record("agent admit", KeyError("y"))
    assert failures.problem() == "agent admit failing (3 times in 40 s): KeyError: 'y'"
    clock.now += 20.5  # the first of the three is past the window
    assert failures.problem() is None
    assert failures.total == {"agent admit": 3}


def test_failures_spread_out_are_no_problem():
    clock = Clock()
    failures = Failures(clock)
    for _ in range(10):
        failures.record("fetch ticks", RuntimeError("rare"))
        clock.now += 31
    assert failures.problem() is None


def test_an_error_naming_a_secret_is_masked():
    install(["sk-failures-secret"])
    failures = Failures(Clock())
    for _ in range(3):
        failures.record("the upstream call", ValueError("bad key sk-failures-secret"))
    assert "sk-failures-secret" not in failures.problem()
    assert MASK in failures.problem()


async def test_an_agent_that_crashes_is_counted(tmp_path):
    app = App("failures-test", autodiscover=False, store="memory://", datadir=str(tmp_path))
    app.failures = Failures()
    channel = app.channel()

    @app.agent(channel, name="boom")
    async def boom(stream):
        async for value in stream:
            raise RuntimeError(f"bug on {value}")

    app.flow_control.resume()
    await boom.start()
    try:
        await channel.put(1)
        for _ in range(100):
            if app.failures.total:
                break
            await asyncio.sleep(0.02)
    finally:
        boom.cancel()  # its actor, restarted by the supervisor, waits on the channel
        await boom.stop()
    assert app.failures.total == {"agent boom": 1}
    assert app.failures.last_error["agent boom"] == "RuntimeError: bug on 1"
    assert isinstance(app, faust.App)
