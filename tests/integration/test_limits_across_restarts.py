"""Spent budget survives restarts: the worker stops (SIGTERM or SIGKILL) with its own
embedded broker, which is memory-only, and starts again. The upstream (the simulator,
which keeps running and counting) must never see more calls in a window than its limit:
0 answers 429, whatever the restart forgot."""

from __future__ import annotations

import signal
import time

import httpx
import pytest

from quotacache.dev.broker import free_port

from .conftest import Deployment, poll

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: Symbols read before and after the restart: more than the endpoint allows in a window.
BEFORE = [f"S{i}" for i in range(9)]
AFTER = [f"T{i}" for i in range(12)]


def read_all(worker, symbols: list[str]) -> None:
    for symbol in symbols:
        with_retries = 0
        while True:
            try:
                worker.get(f"/cache/cryptometer/ticker/{symbol}")
                break
            except httpx.HTTPError:
                with_retries += 1
                assert with_retries < 50, "worker stopped answering"
                time.sleep(0.1)


def ticker_calls(simulator) -> tuple[int, int]:
    stats = simulator.stats()
    return (stats["accepted_by_endpoint"].get("cryptometer/ticker", 0),
            stats["rejected_by_endpoint"].get("cryptometer/ticker", 0))


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_spent_budget_is_not_forgotten_when_worker_and_broker_restart(tmp_path, simulator,
                                                                       how):
    port = free_port()  # nobody answers there: the worker starts its own broker
    deployment = Deployment(tmp_path, f"127.0.0.1:{port}", simulator, embedded=True)
    # No headroom: the limiter may use the whole 10/60, so one forgotten call is a 429.
    deployment.configure('limits = ["1000/60"]\nendpoint_limits = ["10/60"]\nheadroom = 0.0\n')
    simulator.configure(limits={"cryptometer": ["1000/60"]},
                        endpoint_limits={"cryptometer": ["10/60"]})
    try:
        worker = deployment.start_worker()
        read_all(worker, BEFORE)
        poll(lambda: ticker_calls(simulator)[0] >= len(BEFORE), timeout=30,
             message="9 calls spent before the restart")

        worker.child.process.send_signal(how)
        worker.child.process.wait(timeout=30)
        restarted = deployment.start_worker(data_dir=worker.data_dir)
        read_all(restarted, AFTER)
        # Whatever the worker sends now lands inside the upstream's window of the first
        # calls; give it time to send everything it (wrongly) could.
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline:
            read_all(restarted, AFTER[:3])
            time.sleep(1)
        accepted, rejected = ticker_calls(simulator)
        print(f"\n{how.name}: {accepted} calls accepted, {rejected} answered 429")
        assert rejected == 0
        assert accepted <= 10
    finally:
        deployment.stop()
