import json

import pytest
from quotacache.streams.records import (
    MAX_MESSAGE_BYTES,
    BadMessage,
    RefreshRequest,
    VolatilitySignal,
    parse_message,
)


def test_a_valid_request_is_parsed_and_the_symbol_upper_cased():
    request = parse_message(RefreshRequest, json.dumps(
        {"service": "cryptometer", "endpoint": "ticker", "symbol": "btc"}).encode())
    assert request.symbol == "BTC" and request.force is False


@pytest.mark.parametrize("raw, reason", [
    (b"\xff\xfe", "not JSON"),
    (b"[1, 2]", "expected a JSON object"),
    (b'{"service": "cryptometer"}', "endpoint"),
    (b'{"service": "cryptometer", "endpoint": "ticker", "symbol": "../admin"}', "symbol"),
    (b'{"service": "cryptometer", "endpoint": "ticker", "symbol": "BTC&api_key=x"}', "symbol"),
    (b'{"service": "Crypto Meter", "endpoint": "ticker"}', "service"),
    (b'{"service": "cryptometer", "endpoint": "ticker", "priority": "urgent"}', "priority"),
    (b'{"service": "cryptometer", "endpoint": "ticker", "extra": 1}', "extra"),
    (b"x" * (MAX_MESSAGE_BYTES + 1), "exceeds"),
])
def test_bad_messages_raise_with_a_reason(raw, reason):
    with pytest.raises(BadMessage, match=reason):
        parse_message(RefreshRequest, raw)


def test_volatility_score_is_bounded():
    with pytest.raises(BadMessage, match="score"):
        parse_message(VolatilitySignal, b'{"symbol": "*", "score": 1.5}')
