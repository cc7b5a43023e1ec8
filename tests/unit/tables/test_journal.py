"""The call journal: calls sent before a restart still count against the limits after it."""

import json

from quotacache.tables.journal import CallJournal

NOW = 1_000_000.0


def journal(tmp_path, worker="w1", horizon=60.0):
    return CallJournal(tmp_path / "journal", worker, horizon)


def started(tmp_path, now=NOW, **kwargs):
    j = journal(tmp_path, **kwargs)
    j.load(now)
    return j


def test_calls_journaled_before_a_restart_count_after_it(tmp_path):
    before = started(tmp_path)
    before.append(NOW + 0.2, ["svc", "svc/ticker"])
    before.append(NOW + 0.7, ["svc"])
    before.close()
    after = started(tmp_path, now=NOW + 5)
    assert sorted(after.times("svc")) == [NOW + 0.2, NOW + 0.7]
    assert after.times("svc/ticker") == [NOW + 0.2]
    assert after.times("svc/ratio") == []


def test_calls_older_than_the_horizon_no_longer_count(tmp_path):
    before = started(tmp_path, horizon=60)
    before.append(NOW, ["svc"])
    before.close()
    assert started(tmp_path, now=NOW + 59.9, horizon=60).times("svc") == [NOW]
    assert started(tmp_path, now=NOW + 60, horizon=60).times("svc") == []


def test_the_calls_of_every_worker_of_the_app_count(tmp_path):
    for worker in ("w1", "w2"):
        j = started(tmp_path, worker=worker)
        j.append(NOW, ["svc"])
        j.close()
    assert started(tmp_path, now=NOW + 1, worker="w3").times("svc") == [NOW, NOW]


def test_calls_made_since_the_start_are_left_to_the_table(tmp_path):
    j = started(tmp_path)
    j.append(NOW, ["svc"])
    assert j.times("svc") == []


def test_a_line_torn_by_a_crash_is_skipped(tmp_path):
    j = started(tmp_path)
    j.append(NOW, ["svc"])
    j.close()
    with j.path.open("a") as f:
        f.write('{"at": 1000000.5, "scop')
    assert started(tmp_path, now=NOW + 1).times("svc") == [NOW]


def test_a_start_rewrites_the_journal_with_only_the_calls_that_can_still_count(tmp_path):
    j = started(tmp_path, horizon=60)
    j.append(NOW, ["svc"])
    j.append(NOW + 30, ["svc"])
    j.close()
    again = started(tmp_path, now=NOW + 70, horizon=60)
    again.close()
    lines = [json.loads(line) for line in again.path.read_text().splitlines()]
    assert [line["at"] for line in lines] == [NOW + 30]

