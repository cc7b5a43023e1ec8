"""Two workers; the one owning the service is killed with SIGKILL mid-load. The survivor
takes the service over with the calls already counted, so the upstream never sees more
than its limits, and every read is answered throughout: with data or a miss, or, while
the survivor's rebalance and recovery run, with the "not ready" 503 and its Retry-After.
On both brokers: on real Kafka the survivor recovers from a changelog Kafka really stores."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from quotacache.client import Client

from ..windows import max_in_any_window
from .conftest import apoll

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.both_brokers]

# The 40 s window outlives the takeover (~16 s): the survivor must know the calls the
# killed owner made, or it would spend the window a second time and get 429s.
LIMITS, ENDPOINT_LIMITS = ["16/40", "6/2"], ["8/40"]
SYMBOLS = [f"S{i}" for i in range(12)]
ENDPOINTS = ["ticker", "ls_ratio", "open_interest", "xtrades"]


def fetched_at_by_key(records) -> dict[str, set[float]]:
    """Each key's ``fetched_at`` values among data records."""
    found: dict[str, set[float]] = {}
    for record in records:
        value = json.loads(record.value)
        found.setdefault(f"cryptometer/{value['endpoint']}/{value['symbol']}",
                         set()).add(value["fetched_at"])
    return found


async def test_sigkill_of_the_owner_mid_load_loses_no_limit_and_no_read(deployment):
    deployment.configure(f"limits = {json.dumps(LIMITS)}\n"
                         f"endpoint_limits = {json.dumps(ENDPOINT_LIMITS)}\n")
    deployment.simulator.configure(limits={"cryptometer": LIMITS},
                                   endpoint_limits={"cryptometer": ENDPOINT_LIMITS})
    first = deployment.start_worker("w1")
    second = deployment.start_worker("w2")

    def owner_url(via=second):
        return httpx.get(f"{via.url}/status/cryptometer", timeout=5).json().get("owner")

    await apoll(lambda: owner_url() in (first.url, second.url), timeout=40,
                message="the service has an owner")
    owner = first if owner_url() == first.url else second
    survivor = second if owner is first else first
    answers: list[int] = []
    not_ready: list[float] = []  # when the survivor answered 503 + Retry-After (rebalancing)
    failures: list[str] = []
    # A key once answered with data has data somewhere from then on: a MISS for it (the
    # survivor asked while the owner is dead, holding no copy) would be a wrong answer.
    had_data: set[str] = set()
    wrong_misses: list[tuple[float, str]] = []
    kill_time = [float("inf")]  # when the owner was killed, for the reader

    async def read_forever(stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(base_url=survivor.url, timeout=10) as http:
            i = 0
            while not stop.is_set():
                endpoint, symbol = ENDPOINTS[i % 4], SYMBOLS[i % len(SYMBOLS)]
                i += 1
                key = f"{endpoint}/{symbol}"
                try:
                    response = await http.get(f"/cache/cryptometer/{key}")
                    answers.append(response.status_code)
                    if response.status_code == 200:
                        had_data.add(key)
                    elif response.status_code == 202 and key in had_data:
                        wrong_misses.append((round(time.time() - kill_time[0], 2), key))
                    if response.status_code == 503 and "Retry-After" in response.headers:
                        not_ready.append(time.time())
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                await asyncio.sleep(0.02)

    async def demand(until: float) -> None:
        async with Client(deployment.settings) as client:
            while time.monotonic() < until:
                for endpoint in ENDPOINTS:
                    for symbol in SYMBOLS:
                        await client.request_refresh("cryptometer", endpoint, symbol,
                                                     force=True, priority="critical")
                await asyncio.sleep(0.5)

    stop = asyncio.Event()
    reader = asyncio.create_task(read_forever(stop))
    load = asyncio.create_task(demand(time.monotonic() + 75))
    await apoll(lambda: deployment.simulator.stats()["accepted"] >= 10, timeout=30,
                message="calls before the kill")
    owner.child.kill()
    killed_at = kill_time[0] = time.time()
    await apoll(lambda: owner_url(via=survivor) == survivor.url, timeout=45, interval=0.5,
                message="the survivor owns the service")
    took_over = time.time() - killed_at
    await apoll(lambda: sum(1 for t, _ in deployment.simulator.stats(log=True)["call_log"]
                            if t > killed_at + took_over) >= 3,
                timeout=60, message="calls resumed under the new owner")
    await load
    stop.set()
    await reader
    sim = deployment.simulator.stats(log=True)
    assert sim["rejected"] == 0
    times = [t for t, _ in sim["call_log"]]
    assert max_in_any_window(times, 40) <= 16 and max_in_any_window(times, 2) <= 6
    answered = [code for code in answers if code in (200, 202)]
    assert not failures and answered, (failures[:3], sorted(set(answers)))
    assert len(answered) + len(not_ready) == len(answers), sorted(set(answers))
    assert not wrong_misses, wrong_misses[:5]
    # "Not ready" only while the survivor took the service over, never after.
    assert all(killed_at <= at <= killed_at + took_over + 5 for at in not_ready), (
        [round(at - killed_at, 1) for at in not_ready], took_over)
    # The survivor's table is exact: every key holds the newest record of the data topics,
    # or one newer still. The survivor goes on renewing the keys read, so the topics are
    # read before the table and again after it: what it serves must be at least the
    # newest of the first reading, and a record of the second (or it was lost or made up).
    def served(key):
        return httpx.get(f"{survivor.url}/cache/{key}", timeout=5).json().get("fetched_at")

    async def data_records():
        return fetched_at_by_key(await deployment.consume_all(
            lambda t: t.startswith(deployment.topic("data.cryptometer."))))

    deadline, rounds = time.monotonic() + 30, 0
    while True:
        rounds += 1
        newest = {key: max(times) for key, times in (await data_records()).items()}
        assert newest, "no data records read back"
        table = {key: served(key) for key in newest}
        recorded = await data_records()
        wrong = {key: (table[key], at) for key, at in newest.items()
                 if table[key] is None or table[key] < at
                 or table[key] not in recorded.get(key, ())}
        if not wrong:
            break
        assert time.monotonic() < deadline, (
            "the survivor's table does not match the data topics after 30 s "
            f"(key: (served, newest)): {sorted(wrong.items())[:5]}")
        await asyncio.sleep(0.5)
    print(f"takeover after SIGKILL: {took_over:.1f}s, reads answered: {len(answered)} "
          f"(and {len(not_ready)} 'not ready' during the takeover), {len(newest)} keys exact "
          f"(topics read {rounds} times)")
