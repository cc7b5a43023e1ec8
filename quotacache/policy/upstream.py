"""What to do with an upstream's answer: retry or not, when, its rate hints and
Retry-After, list fan-out.

Only failures that can succeed on a second try are retried (timeouts, connection errors,
5xx); a 4xx other than 429, an oversized or malformed body would fail the same way again
and would spend budget for nothing. A 429 is not retried here either: it pauses the whole
service (see ``health``) and the order waits in the queue for the pause to end.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any

from quotacache.streams.records import normalize_symbol


def retry_delay(attempt: int, base: float, cap: float,
                uniform: Callable[[float, float], float] = random.uniform) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**attempt)]."""
    return float(uniform(0.0, min(cap, base * 2 ** attempt)))


def rate_hint(answer_headers: Mapping[str, str], now: float) -> dict[str, Any] | None:
    """remaining, reset_at (and limit) from X-RateLimit-Remaining / -Reset (/ -Limit)."""
    remaining = answer_headers.get("X-RateLimit-Remaining")
    reset = answer_headers.get("X-RateLimit-Reset")
    if remaining is None or reset is None:
        return None
    try:
        left, at = int(remaining), float(reset)
        raw_limit = answer_headers.get("X-RateLimit-Limit")
        limit = int(raw_limit) if raw_limit else None
    except ValueError:
        return None
    if not math.isfinite(at):
        return None
    # Reset is epoch milliseconds, epoch seconds, or seconds from now; never further
    # than a Retry-After may ask (a lying or misread reset would stop the service).
    reset_at = at / 1000.0 if at > 1e12 else at if at > 1e9 else now + max(0.0, at)
    return {"remaining": left, "reset_at": min(reset_at, now + MAX_RETRY_AFTER),
            "limit": limit}


#: The longest pause a Retry-After or a rate hint's reset may ask for (seconds): an
#: upstream that says "never" (``inf``, a date in year 9999) is asked again after a day,
#: one call.
MAX_RETRY_AFTER = 86_400.0


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), at most
    ``MAX_RETRY_AFTER``; None when it says nothing usable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - now
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if math.isnan(seconds):
        return None
    return min(MAX_RETRY_AFTER, max(0.0, seconds))


def fan_out(symbol: str, data: Any, field: str | None) -> list[tuple[str, Any]]:
    """(symbol, data) entries from one answer: itself, plus each listed item for a list
    endpoint. Items without a valid symbol are kept only in the whole list."""
    entries = [(symbol, data)]
    if field and isinstance(data, list):
        for item in data:
            try:
                entries.append((normalize_symbol(item[field]), item))
            except (KeyError, TypeError, ValueError):
                continue
    return entries
