"""A restarted worker serves every key it had, with and without its data dir.

This is the proof of the embedded-broker compatibility layer: Tansu's wrong end offsets
make Faust stop recovery early (without a data dir) or die with ConsistencyError (with one).
"""

from __future__ import annotations

import shutil
import time

import httpx
import pytest

from quotacache.streams.records import DataRecord

from .conftest import json_key, poll

pytestmark = pytest.mark.integration

KEYS = 120
VERSIONS = 3


def records(now: float) -> list[tuple[str, DataRecord]]:
    out = []
    for version in range(VERSIONS):
        for i in range(KEYS):
            endpoint = ("ticker", "ls_ratio", "xtrades")[i % 3]
            record = DataRecord(service="cryptometer", endpoint=endpoint, symbol=f"S{i}",
                                data={"i": i, "version": version}, fetched_at=now + version,
                                ttl=3600)
            out.append((f"data.cryptometer.{endpoint}", record))
    return out


def served_versions(worker) -> dict[str, int]:
    """The version each key answers with (a key missing or wrong shows up as -1)."""
    found = {}
    with httpx.Client(base_url=worker.url, timeout=10.0) as http:
        for i in range(KEYS):
            endpoint = ("ticker", "ls_ratio", "xtrades")[i % 3]
            answer = http.get(f"/cache/cryptometer/{endpoint}/S{i}").json()
            found[f"S{i}"] = (answer.get("data") or {}).get("version", -1)
    return found


async def test_restarted_worker_serves_every_key_with_and_without_its_data_dir(deployment):
    # Reads of keys not yet materialized ask for refreshes: let those fail, so every
    # entry comes from the records below and nothing else.
    deployment.simulator.configure(fail={"cryptometer": "500"})
    worker = deployment.start_worker()
    await deployment.produce_to([(deployment.topic(topic), json_key(r.key), r.to_json())
                                 for topic, r in records(time.time())])
    expected = {f"S{i}": VERSIONS - 1 for i in range(KEYS)}
    poll(lambda: served_versions(worker) == expected, timeout=30, interval=0.5,
         message="all keys at their last version")

    worker.child.stop()
    kept = deployment.start_worker("w2", data_dir=worker.data_dir)
    assert served_versions(kept) == expected

    kept.child.stop()
    shutil.rmtree(kept.data_dir)
    rebuilt = deployment.start_worker("w3", data_dir=kept.data_dir)
    assert served_versions(rebuilt) == expected


def test_a_control_change_answered_200_survives_a_sigkill_right_after(deployment):
    """Monitored symbols and a pinned strategy live in tables: a 200 means their changelog
    has the change, so a worker killed at once finds it at its restart (before, the
    answer came before the producer sent the record: lost 3 times in 3)."""
    worker = deployment.start_worker()
    monitored = httpx.post(worker.url + "/symbols", timeout=10, json={
        "symbols": ["ZZZ"], "endpoints": ["cryptometer/ticker"]})
    pinned = httpx.post(worker.url + "/strategy", timeout=10, json={
        "service": "cryptometer", "strategy": "MINIMAL"})
    assert monitored.status_code == 200 and pinned.status_code == 200
    worker.child.kill()  # SIGKILL: nothing flushed on the way out
    again = deployment.start_worker("w2", data_dir=worker.data_dir)
    assert "ZZZ" in again.get("/symbols").json()["symbols"]
    strategy = again.get("/strategy").json()["cryptometer"]
    assert strategy["strategy"] == "MINIMAL" and strategy["pinned"]
