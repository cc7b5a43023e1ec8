import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quotacache.streams.records import (
    MAX_MESSAGE_BYTES,
    BadMessage,
    RefreshRequest,
    VolatilitySignal,
    normalize_symbol,
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
    # json.loads raises ValueError and RecursionError too, not only JSONDecodeError:
    (b'{"service": "cryptometer", "x": ' + b"1" * 5000 + b"}", "not JSON: ValueError"),
    (b"[" * 50_000, "not JSON: RecursionError"),
    ("[" * 50_000, "not JSON: RecursionError"),
])
def test_bad_messages_raise_with_a_reason(raw, reason):
    with pytest.raises(BadMessage, match=reason):
        parse_message(RefreshRequest, raw)


def test_volatility_score_is_bounded():
    with pytest.raises(BadMessage, match="score"):
        parse_message(VolatilitySignal, b'{"symbol": "*", "score": 1.5}')


@pytest.mark.parametrize("symbol", ["BTC\n", "ETH\r\n", "\nBTC", "BTC ", "ＢＴＣ", "BTC\x00",
                                    "BTC%26api_key%3Dx", "ETH/USDT", "\u202eCTB"])
def test_symbols_with_anything_but_ticker_characters_are_refused(symbol):
    with pytest.raises(BadMessage, match="symbol"):
        parse_message(RefreshRequest, json.dumps(
            {"service": "cryptometer", "endpoint": "ticker", "symbol": symbol}))


@given(st.text(max_size=40))
def test_an_accepted_symbol_can_only_hold_url_safe_ticker_characters(symbol):
    """Whatever text arrives, what reaches an upstream URL is a plain ticker (or '*')."""
    try:
        accepted = normalize_symbol(symbol)
    except ValueError:
        return
    assert accepted == "*" or (1 <= len(accepted) <= 30 and all(
        c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-" for c in accepted))
