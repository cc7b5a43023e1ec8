"""The simulator's API keys: open by default, checked only when required."""

from __future__ import annotations

import subprocess
import sys

from aiohttp import test_utils

from quotacache.dev.simulator import Simulator, key_variables
from quotacache.services import KINGFISHER

TICKER = "/ticker/"  # cryptometer: the key goes in the api_key query parameter
LIQ_MAP = "/kingfisher" + KINGFISHER["endpoints"]["liquidation_map"]["path"]  # X-API-Key


async def answers(sim: Simulator, calls: list[tuple[str, dict, dict]]) -> list[int]:
    async with test_utils.TestClient(test_utils.TestServer(sim.app())) as client:
        statuses = []
        for path, params, headers in calls:
            response = await client.get(path, params=params, headers=headers)
            statuses.append(response.status)
        return statuses


async def test_open_by_default_any_key_or_none(monkeypatch):
    monkeypatch.setenv("CRYPTOMETER_API_KEY", "the-real-key")
    sim = Simulator(latency=(0, 0))
    assert await answers(sim, [(TICKER, {"market_pair": "BTC-USDT"}, {}),
                               (TICKER, {"api_key": "anything"}, {}),
                               (LIQ_MAP, {"symbol": "BTC"}, {})]) == [200, 200, 200]


async def test_required_keys_refuse_a_missing_or_wrong_key(monkeypatch):
    monkeypatch.setenv("CRYPTOMETER_API_KEY", "the-real-key")
    monkeypatch.delenv("KINGFISHER_API_KEY", raising=False)
    sim = Simulator(latency=(0, 0), require_keys=True)
    assert await answers(sim, [
        (TICKER, {}, {}),                                   # no key
        (TICKER, {"api_key": "wrong"}, {}),                 # not the configured one
        (TICKER, {"api_key": "the-real-key"}, {}),
        (LIQ_MAP, {}, {}),                                  # no key in the header
        (LIQ_MAP, {}, {"X-API-Key": "any"}),                # no variable set: any key
    ]) == [401, 401, 200, 401, 200]
    assert sim.accepted == {"cryptometer/ticker": 1, "kingfisher/liquidation_map": 1}


async def test_keys_can_be_required_at_run_time():
    sim = Simulator(latency=(0, 0), keys={})
    async with test_utils.TestClient(test_utils.TestServer(sim.app())) as client:
        assert (await client.get(TICKER)).status == 200
        assert (await client.post("/_sim/config", json={"require_keys": True})).status == 200
        assert (await client.get(TICKER)).status == 401
        assert (await client.get(TICKER, params={"api_key": "k"})).status == 200


def test_help_says_it_is_open_unless_keys_are_required():
    result = subprocess.run([sys.executable, "-m", "quotacache", "upstream-sim", "--help"],
                            capture_output=True, text=True, timeout=60)
    text = " ".join(result.stdout.split())
    assert result.returncode == 0
    assert "--require-keys" in text and "Open by default" in text
    assert set(key_variables()) == {"CRYPTOMETER_API_KEY", "KINGFISHER_API_KEY",
                                    "AIRTABLE_API_KEY", "TELEGRAM_BOT_TOKEN"}
    assert all(name in text for name in key_variables())


def test_a_stop_ends_at_once_while_a_timeout_fault_holds_an_answer(tmp_path):
    """The ``timeout`` fault holds its answer an hour: a stop must not wait for it."""
    import contextlib
    import threading
    import time

    import httpx

    from quotacache.dev.broker import free_port
    from quotacache.dev.processes import start_simulator

    from ...polling import poll

    port = free_port()
    child = start_simulator(port, latency="0-0", log_path=tmp_path / "sim.log")
    url = f"http://127.0.0.1:{port}"
    try:
        httpx.post(f"{url}/_sim/config", json={"fail": {"cryptometer": "timeout"}}, timeout=5)
        def held_call() -> None:
            with contextlib.suppress(httpx.HTTPError):  # cut when the simulator stops
                httpx.get(f"{url}/ticker/", timeout=30)

        held = threading.Thread(target=held_call, daemon=True)
        held.start()
        poll(lambda: httpx.get(f"{url}/_sim/stats", timeout=5).json()["failed"] == 1,
             timeout=10, message="the request held by the fault")
        started = time.monotonic()
        child.stop(timeout=20)
        assert time.monotonic() - started < 5
        assert child.process.returncode == 0, child.process.returncode
    finally:
        child.kill()
