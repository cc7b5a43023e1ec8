"""What flows on the topics: pydantic models for every message, validated on arrival.

Source topics carry raw bytes and are parsed here, so a malformed message becomes a
dead-letter record with the validation message instead of an exception in an agent.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from quotacache.errors import InvalidSymbol, UnknownTarget
from quotacache.redact import redact
from quotacache.settings import Priority, Settings

#: Symbols are tickers such as BTC, 1000PEPE or ETH2; '*' names a whole-market entry.
SYMBOL_PATTERN = re.compile(r"(\*|[A-Za-z0-9][A-Za-z0-9_-]{0,29})")
#: Service and endpoint names as the configuration allows them.
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,63}")
#: Payloads beyond this are refused before parsing.
MAX_MESSAGE_BYTES = 64 * 1024

Reason = Literal["request", "read", "schedule", "batch", "force", "sweep", "planned"]


class BadMessage(ValueError):
    """A topic message that cannot be processed; the text is the dead-letter reason."""


def _name(value: str) -> str:
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise ValueError("must be lower-case letters, digits and '_' (at most 64)")
    return value


def normalize_symbol(value: str) -> str:
    """Upper-case ticker, or raise ValueError naming what is wrong with it."""
    if not isinstance(value, str) or not SYMBOL_PATTERN.fullmatch(value):
        raise ValueError("symbol must be 1-30 letters, digits, '_' or '-' (or '*')")
    return value.upper()


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_json(self) -> bytes:
        """The record as sent on a topic, with every configured secret masked."""
        return redact(self.model_dump_json()).encode()


class RefreshTarget(Record):
    """What a producer asks to refresh: a refresh message, and the body of POST /refresh."""

    service: str
    endpoint: str
    symbol: str = "*"
    priority: Priority | None = None
    force: bool = False


class RefreshRequest(RefreshTarget):
    """Ask for one key to be refreshed: published on ``<prefix>refresh``."""

    reason: Reason = "request"

    _service = field_validator("service", "endpoint")(classmethod(lambda cls, v: _name(v)))
    _symbol = field_validator("symbol")(classmethod(lambda cls, v: normalize_symbol(v)))


class VolatilitySignal(Record):
    """Market volatility for one symbol (or ``*``), 0..1; read by the scheduler."""

    symbol: str
    score: float = Field(ge=0.0, le=1.0)

    _symbol = field_validator("symbol")(classmethod(lambda cls, v: normalize_symbol(v)))


class FetchOrder(Record):
    """An admitted refresh, keyed by service so one partition owns the service's limits."""

    kind: Literal["order"] = "order"
    service: str
    endpoint: str
    symbol: str
    priority: Priority
    reason: Reason
    requested_at: float
    attempt: int = 0
    #: Reads per second of the key when it was ordered (its owner counts them).
    rate: float = 0.0
    #: When ``rate`` was measured, if not at ``requested_at`` (an order handed over to a
    #: service's new owner keeps its oldest request time and its latest rate).
    rate_at: float | None = None
    #: When the key's current data stops being fresh; None when it has none.
    fresh_until: float | None = None
    #: Asked with force: called even while the key is fresh.
    force: bool = False
    #: Only a new read rate for the key's waiting order: dropped when none waits (its
    #: call is under way or done), so it never starts a call of its own.
    rerank: bool = False
    #: When the last reader waiting for this call on the key's owner gives up: the
    #: service's owner, another worker perhaps, ranks the call by it (``?wait=``).
    readers_until: float | None = None

    @property
    def key(self) -> str:
        return cache_key(self.service, self.endpoint, self.symbol)


class ServiceFeedback(Record):
    """How an upstream call ended, sent back to the service's partition to update its health."""

    kind: Literal["feedback"] = "feedback"
    service: str
    endpoint: str
    outcome: Literal["success", "failure", "rate_limited"]
    retry_after: float | None = None
    remaining: int | None = None
    reset_at: float | None = None
    limit: int | None = None
    at: float


class Tick(Record):
    """Wakes the fetch agent of a service with queued work (table writes need an event)."""

    kind: Literal["tick"] = "tick"
    service: str


class DataRecord(Record):
    """A fetched result on ``<prefix>data.<service>.<endpoint>``, keyed by its cache key."""

    service: str
    endpoint: str
    symbol: str
    data: Any
    fetched_at: float
    ttl: float

    @property
    def key(self) -> str:
        return cache_key(self.service, self.endpoint, self.symbol)


class FetchOutcome(Record):
    """Why a fetch ended without data (blocked, upstream error): clears the in-flight mark."""

    service: str
    endpoint: str
    symbol: str
    outcome: Literal["blocked", "error", "dropped"]
    detail: str
    at: float


class DeadLetter(Record):
    """A message that could not be processed, with the reason and a bounded copy of it."""

    topic: str
    partition: int | None = None
    offset: int | None = None
    reason: str
    payload: str
    at: float


def cache_key(service: str, endpoint: str, symbol: str) -> str:
    return f"{service}/{endpoint}/{symbol}"


def resolve_target(settings: Settings, service: str, endpoint: str,
                   symbol: str) -> tuple[str, str]:
    """Check a (service, endpoint, symbol) against the config; return (symbol, cache key).

    Endpoints that take no symbol are cached under ``*`` whatever symbol is asked. One
    function for the worker and the client, so a client keys a request where the worker
    would (no re-keying hop). Raises UnknownTarget or InvalidSymbol naming the bad part.
    """
    config = settings.services.get(service)
    if config is None:
        raise UnknownTarget(f"unknown service {service!r}")
    spec = config.endpoints.get(endpoint)
    if spec is None:
        raise UnknownTarget(f"unknown endpoint {endpoint!r} of service {service!r}")
    try:
        symbol = normalize_symbol(symbol)
    except ValueError as exc:
        raise InvalidSymbol(f"{symbol!r}: {exc}") from None
    if not spec.takes_symbol and not spec.fan_out:
        symbol = "*"
    elif symbol == "*" and not spec.fan_out:
        raise InvalidSymbol(f"endpoint {service}/{endpoint} needs a symbol")
    return symbol, cache_key(service, endpoint, symbol)


def parse_message(model: type[Record], raw: bytes | str | Any) -> Any:
    """Validate a raw topic value into ``model`` or raise BadMessage with a readable reason."""
    if isinstance(raw, (bytes, bytearray)) and len(raw) > MAX_MESSAGE_BYTES:
        raise BadMessage(f"message of {len(raw)} bytes exceeds {MAX_MESSAGE_BYTES}")
    if isinstance(raw, (bytes, bytearray, str)):
        raw = _loads(raw)
    if not isinstance(raw, dict):
        raise BadMessage(f"expected a JSON object, got {type(raw).__name__}")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'message'}: {err['msg']}"
            for err in exc.errors()
        )
        raise BadMessage(problems) from None


def _loads(raw: bytes | bytearray | str) -> Any:
    """JSON, or BadMessage: besides a syntax error, json.loads raises ValueError for bad
    UTF-8 or an integer of over 4,300 digits, and RecursionError for deep nesting."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise BadMessage(f"not JSON: {type(exc).__name__}: {str(exc)[:200]}") from None


FETCH_KINDS: dict[str, type[Record]] = {"order": FetchOrder, "feedback": ServiceFeedback,
                                        "tick": Tick}


def parse_fetch_message(raw: bytes) -> FetchOrder | ServiceFeedback | Tick:
    """A message of ``internal.fetch``: an order, feedback from a call, or a tick."""
    try:
        kind = json.loads(raw).get("kind", "order")
    except (ValueError, AttributeError, RecursionError):
        kind = "order"  # let parse_message produce the precise reason
    model = FETCH_KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise BadMessage(f"unknown kind {kind!r} on the fetch topic")
    return parse_message(model, raw)


def preview(raw: Any, limit: int = 2048) -> str:
    """A bounded, printable copy of a payload for a dead-letter record."""
    if isinstance(raw, (bytes, bytearray)):
        text = bytes(raw[:limit]).decode("utf-8", errors="replace")
    else:
        text = str(raw)[:limit]
    return text
