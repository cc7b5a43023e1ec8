"""Schemathesis hooks of test_openapi.py: a fuzzed read waits 2 s at most.

A read may wait up to 60 s (``?wait=``) for a refresh; the fuzz run spends the upstream
budget within seconds, after which no refresh ends such a wait, and a read waiting past
the run's request timeout counts as a network error (seed 2526678341: ``wait=47.0``).
Waiting itself is tested in test_reads.py."""

from typing import Any

import schemathesis

MAX_FUZZED_WAIT = 2.0


@schemathesis.hook
def map_query(context: Any, query: dict[str, Any] | None) -> dict[str, Any] | None:
    wait = (query or {}).get("wait")
    if isinstance(wait, int | float) and not isinstance(wait, bool) and wait > MAX_FUZZED_WAIT:
        query = {**query, "wait": MAX_FUZZED_WAIT}
    return query
