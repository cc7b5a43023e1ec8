"""Built-in traces keep their shape; file traces reject bad lines by number."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import pytest

from bench import trace
from bench.trace import Limit, TraceError


def test_zipf_is_todays_trace():
    zipf = trace.named("zipf", 7)
    assert (len(zipf.reads), len(zipf.keys()), zipf.oracle_calls()) == (4097, 74, 156)
    assert zipf.limits.as_config() == {"limits": ["100/60", "20/10", "10/5"],
                                       "endpoint_limits": ["10/60"]}
    assert zipf.ttls["ticker"] == 24


@pytest.mark.parametrize(("name", "digest"), [
    ("zipf", "55723f65bcf8275b"), ("tight", "55723f65bcf8275b"),
    ("longtail", "c928c57057a46476"), ("shift", "a010e053f866cfa9")])
def test_built_in_traces_keep_their_reads(name, digest):
    """The cached optima (bench/results/optima.json) are of these very reads."""
    reads = trace.named(name, 7).reads
    assert hashlib.sha256(repr([(r.at, r.key) for r in reads]).encode()).hexdigest()[:16] \
        == digest


def test_tight_halves_every_limit_on_the_same_reads():
    tight, zipf = trace.named("tight", 7), trace.named("zipf", 7)
    assert tight.reads == zipf.reads
    assert tight.limits.service == (Limit(50, 60), Limit(10, 10), Limit(5, 5))
    assert tight.limits.endpoint == (Limit(5, 60),)


def test_longtail_and_shift():
    assert len(trace.named("longtail", 7).keys()) >= 300
    shift = trace.named("shift", 7)
    half = shift.duration / 2
    top = [max(trace.SYMBOLS, key=lambda s, part=part: sum(r.symbol == s for r in part))
           for part in ([r for r in shift.reads if r.at < half],
                        [r for r in shift.reads if r.at >= half + 15])]
    assert top[0] != top[1]


def test_a_built_in_trace_carries_the_process_that_drew_it():
    zipf = trace.named("zipf", 7)
    process = zipf.process
    expected = {f"{e}/{s}": process.expected(f"{e}/{s}", 0.0, zipf.duration)
                for e, s in process.before}
    assert sum(expected.values()) == pytest.approx(len(zipf.reads), rel=0.05)
    key, count = Counter(r.key for r in zipf.reads).most_common(1)[0]
    assert expected[key] == pytest.approx(count, rel=0.1)
    # Outside bursts (every 20 s for 3 s): the spike from 45 s to 60 s lifts its symbols'
    # keys and lowers the others'; nothing is read after the end.
    assert process.intensity("ticker/AVAX", 50.0) > 3 * process.intensity("ticker/AVAX", 44.0)
    assert process.intensity("ticker/XRP", 50.0) < process.intensity("ticker/XRP", 44.0)
    assert process.intensity("ticker/BTC", 21.0) == 4 * process.intensity("ticker/BTC", 34.0)
    assert process.intensity("ticker/BTC", zipf.duration) == 0.0
    spiking = [f"{e}/{s}" for e, s in process.spiking]
    in_spike = sum(1 for r in zipf.reads if 45.0 <= r.at < 60.0 and r.key in spiking)
    assert sum(process.expected(key, 45.0, 60.0) for key in spiking) == pytest.approx(
        in_spike, rel=0.1)


def test_the_shift_trades_places_in_its_process():
    process = trace.named("shift", 7).process
    assert process.intensity("ticker/BTC", 30.0) > process.intensity("ticker/AVAX", 30.0)
    assert process.intensity("ticker/BTC", 70.0) < process.intensity("ticker/AVAX", 70.0)


def test_file_trace(tmp_path):
    path = tmp_path / "t.jsonl"
    lines = [{"at": 2, "service": "cryptometer", "endpoint": "ticker", "symbol": "btc"},
             {"at": 1.5, "service": "cryptometer", "endpoint": "rapid_movements",
              "symbol": "BTC"}]
    path.write_text("\n".join(map(json.dumps, lines)) + "\n\n")
    loaded = trace.named(str(path))
    assert [(r.at, r.key) for r in loaded.reads] == [(1.5, "rapid_movements/*"),
                                                      (2.0, "ticker/BTC")]
    assert loaded.duration == 2 and loaded.spike is None and loaded.process is None


@pytest.mark.parametrize(("line", "error"), [
    ('{"at": 1, "service": "cryptometer"', "Expecting"),
    ('{"at": 1, "service": "cryptometer", "endpoint": "ticker"}', "missing symbol"),
    ('{"at": -1, "service": "cryptometer", "endpoint": "ticker", "symbol": "BTC"}', "at must"),
    ('{"at": 1, "service": "kingfisher", "endpoint": "ticker", "symbol": "BTC"}', "service"),
    ('{"at": 1, "service": "cryptometer", "endpoint": "nope", "symbol": "BTC"}', "unknown"),
    ('{"at": 1, "service": "cryptometer", "endpoint": "coinlist", "symbol": "BTC"}', "list"),
    ('{"at": 1, "service": "cryptometer", "endpoint": "ticker", "symbol": "*"}', "needs"),
    ('[1, 2]', "not a JSON object"),
])
def test_bad_line_is_named(tmp_path, line, error):
    path = tmp_path / "bad.jsonl"
    good = '{"at": 0.5, "service": "cryptometer", "endpoint": "ticker", "symbol": "BTC"}'
    path.write_text(f"{good}\n\n{line}\n")
    with pytest.raises(TraceError, match=f"bad.jsonl:3: .*{error}"):
        trace.load(path)


def test_unknown_name():
    with pytest.raises(TraceError, match="neither a built-in trace"):
        trace.named("no-such-trace")
