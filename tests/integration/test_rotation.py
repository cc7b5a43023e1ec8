"""A rotation re-creates every topic of the worker (quotacache/dev/rotation.py); what it
seeds must be the whole state: a worker restarted after it, with its data dir or with
none at all (everything from the changelogs), still has the cache, the pins and the
monitored symbols, and counts the calls already spent."""

from __future__ import annotations

import asyncio
import json

import httpx

from quotacache.dev.generations import begin_generation, broker_generation, recorded_generation
from quotacache.worker import prepare_broker

from .conftest import poll

#: TTL 5 min: no entry turns stale (and is fetched again) during the test.
KEYS = [f"cryptometer/ls_ratio/S{i}" for i in range(8)] + ["cryptometer/open_interest/BTC"]


async def flood(deployment) -> None:
    """Requests for the (fresh) keys: records, and no call, until the record budget is
    spent."""
    await deployment.produce(deployment.topic("refresh"), [
        (json.dumps(key).encode(), json.dumps(dict(zip(
            ("service", "endpoint", "symbol"), key.split("/"), strict=True))).encode())
        for key in KEYS * 200])


def rotations(worker) -> int:
    return worker.get("/stats?scope=local").json()["events"].get("rotations", 0)


def test_state_survives_a_rotation_and_a_restart_with_or_without_the_data_dir(deployment):
    # The broker's memory (past 1 MB, and grown by a quarter MB since the last rotation)
    # makes the first check rotate; the flood's ~1,900 records pass the record budget.
    # Not the memory alone: the shared broker's RSS did not always grow by a quarter MB.
    deployment.configure(broker_extra='rotate_records = 1500\nrotate_broker_mb = 1\n'
                                      'rotate_check = "1s"')
    worker = deployment.start_worker()
    httpx.post(worker.url + "/strategy", json={"service": "cryptometer",
                                               "strategy": "MINIMAL"}).raise_for_status()
    httpx.post(worker.url + "/symbols", json={"symbols": ["BTC"], "endpoints":
                                              ["cryptometer/open_interest"]}).raise_for_status()
    for key in KEYS:  # open_interest/BTC: monitored, scheduled, or fetched by this read
        poll(lambda key=key: worker.get(f"/cache/{key}?wait=5").status_code == 200,
             timeout=30, message=key)
    before = {key: worker.get(f"/cache/{key}").json()["fetched_at"] for key in KEYS}
    calls = deployment.simulator.stats()["accepted"]
    used = spent(worker)
    done = rotations(worker)

    # A mark an attempt left before it failed (as generation 5): numbers are never reused.
    asyncio.run(begin_generation(deployment.bootstrap, deployment.topic(""), 5))
    asyncio.run(flood(deployment))
    poll(lambda: rotations(worker) > done, timeout=60, message="a rotation")
    for key in KEYS:  # the same entries, not fetched again
        assert worker.get(f"/cache/{key}").json()["fetched_at"] == before[key], key
    assert deployment.simulator.stats()["accepted"] == calls
    # New data still lands after the rotation (the worker reads on after the seeds).
    last = KEYS[0]
    httpx.post(worker.url + "/refresh", json=dict(zip(
        ("service", "endpoint", "symbol"), last.split("/"), strict=True), force=True)
    ).raise_for_status()
    poll(lambda: worker.get(f"/cache/{last}").json()["fetched_at"] > before[last],
         timeout=30, message="a forced refresh after the rotation")
    before[last] = worker.get(f"/cache/{last}").json()["fetched_at"]
    calls, used = deployment.simulator.stats()["accepted"], spent(worker)

    # Each generation is marked on the broker and beside the data dir, past the left
    # mark (more rotations may follow: the shared broker's memory grows with every test).
    poll(lambda: asyncio.run(broker_generation(deployment.bootstrap, deployment.topic("")))
         == recorded_generation(worker.data_dir) >= 6, timeout=20,
         message="the generation marked on the broker and beside the data dir")
    worker.child.stop()  # the same data dir: persisted offsets must match the new topics
    again = deployment.start_worker("w1", data_dir=worker.data_dir)
    check_state(again, before, used)
    again.child.stop()  # no data dir: everything comes from the reseeded changelogs
    fresh = deployment.start_worker("w2")
    check_state(fresh, before, used)
    assert deployment.simulator.stats()["accepted"] == calls


def spent(worker) -> dict[str, int] | None:
    """Calls counted in the service's 100/60 and each endpoint's 10/60 window (None while
    the service's owner is unknown or unreachable: /status says so)."""
    rows = worker.get("/status/cryptometer").json().get("limits")
    if rows is None:
        return None
    return {row["scope"]: row["used"] for row in rows if row["limit"].endswith("/60")}


def check_state(worker, before: dict[str, float], used: dict[str, int]) -> None:
    for key in KEYS:
        answer = worker.get(f"/cache/{key}")
        assert answer.status_code == 200 and answer.json()["fetched_at"] == before[key], key
    status = worker.get("/status").json()["services"]["cryptometer"]
    assert status["strategy"] == "MINIMAL" and status["strategy_pinned"] is True
    assert set(worker.get("/symbols").json()["symbols"]) == {"BTC"}
    assert spent(worker) == used  # within the minute: every call still counts


async def test_a_subscriber_gets_data_fetched_after_a_rotation_and_not_its_seeds(deployment):
    from quotacache.client import subscribe

    from .conftest import apoll

    # The flood's ~1,900 records pass the record budget: a rotation follows whatever the
    # shared broker's memory does (CI: its RSS did not grow by the quarter MB once).
    settings = deployment.configure(broker_extra='rotate_records = 1500\n'
                                                 'rotate_broker_mb = 1\nrotate_check = "1s"')
    worker = await asyncio.to_thread(deployment.start_worker)
    async with httpx.AsyncClient(base_url=worker.url, timeout=30) as http:
        for key in KEYS[:3]:
            assert (await http.get(f"/cache/{key}?wait=10")).status_code == 200, key
        received: list = []

        async def listen() -> None:
            async for record in subscribe(settings, "cryptometer", "ls_ratio"):
                received.append(record)

        listener = asyncio.create_task(listen())
        await asyncio.sleep(1.0)
        done = (await http.get("/stats?scope=local")).json()["events"].get("rotations", 0)
        await flood(deployment)

        async def rotated() -> bool:
            stats = (await http.get("/stats?scope=local")).json()
            return stats["events"].get("rotations", 0) > done

        deadline = asyncio.get_running_loop().time() + 60
        while not await rotated():
            assert asyncio.get_running_loop().time() < deadline, "no rotation"
            await asyncio.sleep(0.5)
        symbol = KEYS[0].rsplit("/", 1)[1]
        (await http.post("/refresh", json={"service": "cryptometer", "endpoint": "ls_ratio",
                                           "symbol": symbol, "force": True})
         ).raise_for_status()
        await apoll(lambda: any(r.symbol == symbol for r in received), timeout=30,
                    message="the forced refresh pushed to the subscriber")
        listener.cancel()
    # S1 and S2 were fetched before the subscription: their seeds are not pushed again.
    seen = [r.symbol for r in received]
    assert symbol in seen and not {"S1", "S2"} & set(seen), seen


def waiting(worker) -> int:
    return worker.get("/stats?scope=local").json()["events"].get("rotations_waiting", 0)


def rotated_once_the_standby_stopped(deployment):
    """One partition, an owner and a standby: the rotation waits while both are there,
    and runs once the standby stops. (owner, standby, fetched_at of every key before)."""
    deployment.configure(broker_extra='rotate_records = 1500\nrotate_broker_mb = 0\n'
                                      'rotate_check = "1s"', partitions=1)
    first = deployment.start_worker("w1")
    second = deployment.start_worker("w2")
    for key in KEYS:
        poll(lambda key=key: first.get(f"/cache/{key}?wait=5").status_code == 200,
             timeout=30, message=key)
    before = {key: first.get(f"/cache/{key}").json()["fetched_at"] for key in KEYS}
    asyncio.run(flood(deployment))
    owner = poll(lambda: next((w for w in (first, second) if waiting(w)), None),
                 timeout=60, message="a rotation waiting for the standby")
    standby = second if owner is first else first
    assert rotations(owner) == rotations(standby) == 0
    standby.child.stop()
    poll(lambda: rotations(owner) == 1, timeout=60, message="the rotation, once alone")
    return owner, standby, before


def takes_over_with_every_entry(owner, successor, before) -> None:
    """Kill ``owner``: ``successor`` serves every key, with the data fetched ``before``
    (nothing fetched again)."""
    owner.child.kill()
    poll(lambda: successor.get("/health").status_code == 200
         and all(successor.get(f"/cache/{key}").status_code == 200 for key in KEYS),
         timeout=60, message="the successor serving every key")
    for key in KEYS:
        assert successor.get(f"/cache/{key}").json()["fetched_at"] == before[key], key


def test_no_rotation_under_a_standby_and_a_new_standby_takes_over_after_one(deployment):
    """One partition, two workers: one owns everything, the other stands by, its standby
    tables reading the changelogs from its own offsets. Re-created under it they would be
    behind what it persisted, so the rotation waits until the owner is alone; a standby
    that joins after it takes over with every entry and every call spent."""
    owner, _, before = rotated_once_the_standby_stopped(deployment)
    third = deployment.start_worker("w3")
    calls, used = deployment.simulator.stats()["accepted"], spent(owner)
    takes_over_with_every_entry(owner, third, before)
    # /status asks the service's owner: the killed one, until the group has rebalanced.
    assert poll(lambda: spent(third), timeout=30, message="the new owner's /status") == used
    assert deployment.simulator.stats()["accepted"] == calls


def test_a_worker_that_joins_while_a_rotation_settles_postpones_it(deployment):
    """The check finds the worker alone; a rotation then waits out the fetches already at
    the broker (``idle_fetch_wait``, 8 s here) before it deletes anything. A standby that
    joins meanwhile must not have the changelogs re-created under it: the rotation asks
    the group again just before, and waits until the worker is alone once more."""
    deployment.configure(broker_extra='rotate_records = 1500\nrotate_broker_mb = 0\n'
                                      'rotate_check = "1s"\nidle_fetch_wait = "8s"',
                         partitions=1)
    first = deployment.start_worker("w1")
    for key in KEYS:
        poll(lambda key=key: first.get(f"/cache/{key}?wait=5").status_code == 200,
             timeout=30, message=key)
    asyncio.run(flood(deployment))
    log = deployment.tmp_path / "w1.log"
    poll(lambda: "rotation starts" in log.read_text(), timeout=60,
         message="the rotation starting")
    second = deployment.start_worker("w2")
    poll(lambda: waiting(first) >= 1, timeout=30, message="the rotation postponed")
    assert rotations(first) == 0
    second.child.stop()
    poll(lambda: rotations(first) == 1, timeout=60, message="the rotation, once alone")
    for key in KEYS:
        assert first.get(f"/cache/{key}").status_code == 200, key


def test_a_standby_restarted_with_its_data_dir_after_a_rotation_takes_over(deployment):
    """A standby stops, the owner rotates alone, the standby comes back with its data
    dir: what it persisted is ahead of the re-created changelogs. It must still take
    over with every entry when the owner dies."""
    owner, standby, before = rotated_once_the_standby_stopped(deployment)
    back = deployment.start_worker("w2-again", data_dir=standby.data_dir)
    # Told apart by the generation it recorded, whatever its offsets (dev/generations.py).
    assert "the data dir was written at 1" in (deployment.tmp_path / "w2-again.log").read_text()
    takes_over_with_every_entry(owner, back, before)


async def test_a_data_dir_of_an_older_generation_is_discarded_at_start(deployment):
    """A data dir that missed a rotation may hold offsets below the new changelogs' ends,
    which its offsets cannot betray: the generation it recorded does."""
    settings = deployment.settings.model_copy(update={"data_dir": deployment.tmp_path / "d"})
    state = settings.data_dir / "tables" / "cache-0.db"

    def write_state() -> None:
        state.parent.mkdir(parents=True, exist_ok=True)
        state.write_text("state")

    await prepare_broker(settings, {})  # as a worker's first start runs it
    write_state()
    await prepare_broker(settings, {})  # and its next
    assert state.exists() and recorded_generation(settings.data_dir) == 1
    await begin_generation(deployment.bootstrap, settings.topic_prefix, 2)  # a rotation
    await prepare_broker(settings, {})
    assert not state.exists() and recorded_generation(settings.data_dir) == 2
    write_state()
    await prepare_broker(settings, {})  # written at generation 2 now: kept
    assert state.exists()
