"""Fuzzed topic messages: random bytes, wrong types, huge payloads, unknown names, hostile
symbols and unicode, with good messages in between. Every bad one is dead-lettered with a
reason, every good one processed, the agents never crash, and no bad symbol reaches the
upstream."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import poll

pytestmark = pytest.mark.integration

#: What a symbol must look like (the contract in DESIGN.md), written independently here.
VALID_SYMBOL = re.compile(r"\*|[A-Za-z0-9][A-Za-z0-9_-]{0,29}")
HOSTILE = ["../admin", "BTC&api_key=x", "BTC\n", "BTC/../../x", "%2e%2e", "BTC USDT",
           "\u202eCTB", "ＢＴＣ", "BTC\x00", "' OR 1=1 --", "<script>", "A" * 31, ""]
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                           lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                           max_leaves=8)
bad_symbol = st.sampled_from(HOSTILE) | st.text(max_size=40).filter(
    lambda s: not VALID_SYMBOL.fullmatch(s))


def dumps(value) -> bytes:
    return json.dumps(value).encode()


bad_refresh = st.one_of(
    st.binary(max_size=300),
    json_values.filter(lambda v: not isinstance(v, dict)).map(dumps),
    st.fixed_dictionaries({"service": json_values.filter(lambda v: not isinstance(v, str)),
                           "endpoint": st.just("ticker")}).map(dumps),
    st.fixed_dictionaries({"service": st.text(max_size=20).filter(lambda s: s != "cryptometer"),
                           "endpoint": st.just("ticker"), "symbol": st.just("BTC")}).map(dumps),
    st.fixed_dictionaries({"service": st.just("cryptometer"),
                           "endpoint": st.sampled_from(["nope", "../ticker", "TICKER"]),
                           "symbol": st.just("BTC")}).map(dumps),
    st.fixed_dictionaries({"service": st.just("cryptometer"), "endpoint": st.just("ticker"),
                           "symbol": bad_symbol}).map(dumps),
    st.just(dumps({"service": "cryptometer", "endpoint": "ticker", "symbol": "B" * 90_000})),
)
bad_volatility = st.one_of(
    st.binary(max_size=100),
    st.fixed_dictionaries({"symbol": bad_symbol, "score": st.just(0.5)}).map(dumps),
    st.fixed_dictionaries({"symbol": st.just("BTC"),
                           "score": st.floats().filter(lambda x: not 0 <= x <= 1)
                           | st.text()}).map(lambda d: json.dumps(d).encode()),
)
GOOD = [f"G{i}" for i in range(6)]


@pytest.mark.both_brokers
@settings(max_examples=1, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(refresh=st.lists(bad_refresh, min_size=120, max_size=120),
       volatility=st.lists(bad_volatility, min_size=30, max_size=30))
def test_fuzzed_messages_are_dead_lettered_and_the_good_ones_processed(deployment, refresh,
                                                                       volatility):
    deployment.configure('endpoint_limits = ["100/60"]\n')
    worker = deployment.start_worker()
    messages = []
    for i, raw in enumerate(refresh):
        messages.append((deployment.topic("refresh"), None, raw))
        if i % 20 == 0:  # a good request between the bad ones
            symbol = GOOD[i // 20]
            messages.append((deployment.topic("refresh"), None, dumps(
                {"service": "cryptometer", "endpoint": "ticker", "symbol": symbol})))
    messages += [(deployment.topic("volatility"), None, raw) for raw in volatility]
    messages.append((deployment.topic("volatility"), None, dumps({"symbol": "eth",
                                                                  "score": 0.9})))
    asyncio.run(deployment.produce_to(messages))

    bad = len(refresh) + len(volatility)
    letters = asyncio.run(deployment.consume(deployment.topic("dead-letter"), bad, timeout=60))
    reasons = [json.loads(letter.value)["reason"] for letter in letters]
    assert len(letters) == bad and all(reasons), "one dead letter with a reason per bad one"
    for symbol in GOOD:
        poll(lambda s=symbol: worker.get(f"/cache/cryptometer/ticker/{s}").json()["status"]
             == "HIT", timeout=30, message=f"{symbol} processed")
    poll(lambda: "ETH" in worker.get("/status").json()["volatile"], timeout=20)
    assert worker.child.alive()
    stats = worker.stats()
    assert stats["dead_letters"] == bad
    # Only the good keys cost upstream calls: nothing bad was turned into a URL.
    assert deployment.simulator.stats()["accepted"] == len(GOOD)
    log = worker.child.log_tail(100_000)
    assert "Traceback" not in log, log[-3000:]
