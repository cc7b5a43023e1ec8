"""Keeps API keys out of every log line, whichever library writes it.

httpx logs request URLs (with a query-parameter key in them) at INFO; any library may
echo a header. A log-record factory replaces each configured secret in the rendered
message before any handler (Faust's included) sees it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

MASK = "***"
_secrets: set[str] = set()
#: ``_secrets``, longest first (a form that contains another is masked whole).
_ordered: tuple[str, ...] = ()


def forms(secret: str) -> set[str]:
    """The secret as written, and as it reads in a URL (an upstream may echo either)."""
    return {secret, quote(secret), quote(secret, safe=""), quote_plus(secret)}


def redact(text: str) -> str:
    for secret in _ordered:
        text = text.replace(secret, MASK)
    return text


def install(secrets: Iterable[str | None]) -> None:
    """Redact these secrets from all log records of this process (idempotent)."""
    global _ordered
    new = {form for s in secrets if s and len(s) >= 4 for form in forms(s)}
    if not new - _secrets:
        return
    first = not _secrets
    _secrets.update(new)
    _ordered = tuple(sorted(_secrets, key=len, reverse=True))
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if not first:
        return
    make_record = logging.getLogRecordFactory()

    def redacting_factory(*args, **kwargs):  # type: ignore[no-untyped-def]
        record = make_record(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is logging's problem, not ours
            return record
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        if record.exc_info and record.exc_info[1] is not None:
            trace = logging.Formatter().formatException(record.exc_info)
            if redact(trace) != trace:
                record.exc_text, record.exc_info = redact(trace), None
        return record

    logging.setLogRecordFactory(redacting_factory)
