"""The hit path's encoded answer is the view's HIT body, whatever the data holds."""

from __future__ import annotations

import json

from quotacache.policy.freshness import CacheEntry
from quotacache.web.hits import encode, plain_query


def test_encoded_answer_is_the_views_body_with_its_age():
    data = {"price": 1.5, "nested": {"age": 0, "ttl": 1}, "text": 'quote " and é'}
    entry = CacheEntry(data, 1000.25, 120.0)
    hot = encode("cryptometer", "ticker", "BTC", entry, 86400)
    body = hot.head + repr(round(12.3456, 3)).encode() + hot.tail
    view = {"service": "cryptometer", "endpoint": "ticker", "symbol": "BTC", "status": "HIT",
            "fresh": True, "data": data, "fetched_at": 1000.25, "age": 12.346, "ttl": 120.0,
            "refresh_requested": False}
    assert body == json.dumps(view).encode()
    assert hot.until == 1120.25 and hot.endpoint == "cryptometer/ticker"
    assert encode("s", "e", "X", entry, 60).until == 1060.25  # expired before stale


def test_only_plain_reads_take_the_hit_path():
    assert plain_query("") and plain_query("wait=2") and plain_query("wait=60")
    for query in ("wait=61", "wait=nan", "wait=-1", "wait=x", "max_age=5",
                  "wait=1&max_age=5", "wait=inf", "wait=\uff15"):  # a full-width 5
        assert not plain_query(query), query
