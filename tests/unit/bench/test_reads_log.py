"""The reads log's summary: where a system lost reads, and the calls it made."""

import json

from bench.reads_log import calls, differences, first_answers, main, summary


def row(at, key, answered, fresh, age=None, ms=1.0):
    return {"at": at, "key": key, "status": "200" if answered else "202",
            "answered": answered, "fresh": fresh, "ms": ms, "age": age}


ONE = [row(0.0, "ticker/BTC", False, False), row(1.0, "ticker/BTC", True, True, age=0.4),
       row(30.0, "ticker/BTC", True, False, age=29.4), row(31.0, "ticker/ETH", True, True,
                                                             age=0.2)]
TWO = [row(0.0, "ticker/BTC", False, False), row(1.0, "ticker/BTC", False, False),
       row(30.0, "ticker/BTC", True, True, age=0.3), row(31.0, "ticker/ETH", False, False)]


def test_summary_counts_stale_and_missed_reads_by_endpoint():
    lines = summary("one", ONE)
    assert lines[0] == "one: 4 reads, 2 fresh, 3 answered"
    assert lines[1].endswith("ticker 1") and lines[2].endswith("ticker 1")


def test_first_answers_and_calls_come_from_the_reads():
    assert first_answers(TWO) == {"ticker/BTC": 30.0}
    # 1.0 - 0.4 and 30.0 - 29.4 are one generation (0.6 s): one call, not two.
    assert calls(ONE, "ticker") == [(1, "BTC"), (31, "ETH")]


def test_the_keys_whose_missed_reads_differ_most_come_first(tmp_path, capsys):
    lines = differences(("one", ONE), ("two", TWO), top=1)
    assert "ticker/BTC" in lines[1] and "missed   1 /   2" in lines[1]
    for name, rows in (("a", ONE), ("b", TWO)):
        (tmp_path / f"{name}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    main([str(tmp_path), "--endpoint", "ticker"])
    out = capsys.readouterr().out
    assert "a: 2 calls on ticker: 1:BTC 31:ETH" in out and "b: 1 calls on ticker: 30:BTC" in out
