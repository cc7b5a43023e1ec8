"""Everything at once, in about a minute: two workers and the embedded broker under load;
one worker is SIGKILLed, the broker restarts (empty: it is memory-only) and the upstream
turns hostile, all together. The upstream never answers 429 (no limit is broken, spent
budget is not forgotten), every read that reaches the survivor is answered or refused
with a reason, and the cache and the counts recover."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter

import httpx
import pytest

from quotacache.dev.broker import EmbeddedBroker, free_port

from ..windows import max_in_any_window
from .conftest import Deployment, apoll

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEYS = [f"ticker/C{i}" for i in range(10)] + [f"ls_ratio/C{i}" for i in range(6)]
PROFILE_LIMITS = [(100, 60), (20, 10), (10, 5)]
#: From the broker's return to a read answered HIT again on the survivor.
RECOVERY_BOUND = 60.0


async def read_forever(url: str, seen: Counter, refused: list, stop: asyncio.Event) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=5.0) as client:
        while not stop.is_set():
            for key in KEYS:
                try:
                    answer = await client.get(f"/cache/cryptometer/{key}")
                except httpx.HTTPError:
                    seen["no answer (restarting)"] += 1
                    await asyncio.sleep(0.1)
                    continue
                seen[answer.status_code] += 1
                if answer.status_code >= 500:
                    body = answer.json()  # the one JSON error shape, with a reason
                    refused.append((answer.status_code, body["error"]))
            await asyncio.sleep(0.2)


def hit(worker, key: str) -> bool:
    try:
        return worker.get(f"/cache/cryptometer/{key}").headers.get("X-Cache") == "HIT"
    except httpx.HTTPError:
        return False


async def test_worker_killed_broker_restarted_and_upstream_hostile_at_once(tmp_path,
                                                                           simulator):
    port = free_port()
    broker = EmbeddedBroker(port, log_path=tmp_path / "broker-1.log").start()
    deployment = Deployment(tmp_path, broker.bootstrap, simulator, embedded=True)
    deployment.configure('retry_base = "0.2s"\nbreaker_cooldown = "3s"\n')
    seen: Counter = Counter()
    refused: list = []
    stop = asyncio.Event()
    try:
        survivor = deployment.start_worker("w1")
        victim = deployment.start_worker("w2")
        load = asyncio.create_task(read_forever(survivor.url, seen, refused, stop))
        await apoll(lambda: sum(hit(survivor, k) for k in KEYS[:4]) >= 2, timeout=60,
                    interval=0.5, message="the cache warm before the chaos")

        victim.child.process.send_signal(signal.SIGKILL)
        simulator.configure(fail={"cryptometer": "garbage"})
        await asyncio.to_thread(broker.stop)
        broker = EmbeddedBroker(port, log_path=tmp_path / "broker-2.log").start()
        back = time.monotonic()
        await apoll(lambda: seen["no answer (restarting)"] > 0 or hit(survivor, KEYS[0]),
                    timeout=30, interval=0.2, message="the survivor noticed the broker")
        simulator.configure(fail={"cryptometer": None})
        await apoll(lambda: any(hit(survivor, k) for k in KEYS), timeout=RECOVERY_BOUND,
                    interval=0.5, message="a key fetched and cached again")
        recovery = time.monotonic() - back
        stop.set()
        await load

        sim = simulator.stats(log=True)
        times = [t for t, name in sim["call_log"] if name.startswith("cryptometer/")]
        print(f"\nchaos: HIT again {recovery:.1f} s after the broker came back; reads "
              f"{dict(seen)}; refused {Counter(code for code, _ in refused)}; upstream "
              f"{sim['accepted']} calls accepted, {sim['rejected']} answered 429")
        assert sim["rejected"] == 0
        for calls, seconds in PROFILE_LIMITS:
            assert max_in_any_window(times, seconds) <= calls
        assert set(seen) <= {200, 202, 503, 504, "no answer (restarting)"}, seen
        assert all(reason for _, reason in refused)
        assert recovery < RECOVERY_BOUND
    finally:
        stop.set()
        deployment.stop()
        broker.stop()
