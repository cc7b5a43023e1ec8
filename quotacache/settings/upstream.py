"""The settings of one upstream API: its endpoints, limits, key and call policy."""

from __future__ import annotations

import os
import re
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from quotacache.units import Duration, Priority, RateLimit

N = TypeVar("N")


def checked_names(kind: str, named: dict[str, N]) -> dict[str, N]:
    """Service and endpoint names appear in URLs, topic names and metrics labels."""
    for name in named:
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", name):
            raise ValueError(f"{kind} name {name!r} must be lower-case letters, digits, _")
    return named


class AuthConfig(BaseModel):
    """Where the API key goes (a query parameter or a header) and which env var holds it."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    query: str | None = None
    header: str | None = None
    env: str

    @model_validator(mode="after")
    def _one_place(self) -> AuthConfig:
        if bool(self.query) == bool(self.header):
            raise ValueError("auth needs exactly one of 'query' or 'header'")
        return self

    def secret(self) -> str | None:
        """The key from the environment, or None when unset."""
        return os.environ.get(self.env) or None


class EndpointConfig(BaseModel):
    """One upstream endpoint: its path, how the symbol is sent, its TTL and priority."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    path: str
    ttl: Duration
    priority: Priority = Priority.MEDIUM
    params: dict[str, str] = Field(default_factory=dict)
    symbol_param: str | None = "symbol"
    symbol_format: str = "{symbol}"
    limits: list[RateLimit] | None = None
    #: For list endpoints: the field of each item that names its symbol. One call then
    #: fills every listed symbol's entry (and the whole list under ``*``).
    fan_out: str | None = None


    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/") or "://" in value or ".." in value:
            raise ValueError("path must start with '/' and stay on the service's host")
        return value

    @field_validator("symbol_format")
    @classmethod
    def _format(cls, value: str) -> str:
        try:
            value.format(symbol="BTC", symbol_lower="btc")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"symbol_format may use {{symbol}} and {{symbol_lower}}: {exc}") from None
        return value

    @property
    def takes_symbol(self) -> bool:
        return self.symbol_param is not None


class ServiceConfig(BaseModel):
    """One upstream API: where it lives, how to authenticate, its limits and endpoints."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    base_url: str
    auth: AuthConfig | None = None
    limits: list[RateLimit] = Field(default_factory=list)
    endpoint_limits: list[RateLimit] = Field(default_factory=list)
    headers: dict[str, str] = Field(default_factory=dict)
    #: httpx's timeout for each step of a call (connect, each read of the body).
    timeout: Duration = 10.0
    #: The whole call at most (connect + headers + body), however the upstream dribbles.
    call_deadline: Duration = 15.0
    #: Answers larger than this are cut off at this size and count as failures.
    max_answer_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    envelope: Literal["json", "cryptometer"] = "json"
    max_staleness: Duration = 24 * 3600.0
    max_in_flight: int = Field(default=8, gt=0)
    #: Fraction of every limit left unused. Spent budget survives restarts through the
    #: call journal, so none is needed on one machine; see the README for clusters.
    headroom: float = Field(default=0.0, ge=0.0, lt=1.0)
    #: Spread of delays between the limiter's decision and the upstream's count: each
    #: limit counts calls over its window plus this (policy/limits.py states the bound).
    #: Half of it is allowed between decision and send (a call later than that is not
    #: sent but decided again), half for the network. A call answered counts from this
    #: much before its answer instead (the upstream counted it by then).
    arrival_jitter: Duration = 0.5
    #: How much a fresh read of each priority is worth when the budget is scarce.
    priority_weights: dict[str, float] = Field(default_factory=lambda: {
        "critical": 4.0, "high": 2.0, "medium": 1.0, "low": 1.0})
    #: Seconds of reads a key's first fetch is worth beyond its TTL (misses answered).
    answered_bonus: float = Field(default=0.0, ge=0.0)
    #: A read waiting (``?wait=``) for a key's call is a sure read: it counts as this many
    #: weighted reads in the call's value when the key has no data (a miss answered) and
    #: when its data is stale (a stale answer made fresh). It orders the calls that fit;
    #: the room kept for planned refreshes is judged without it.
    waiting_miss_worth: float = Field(default=10.0, ge=0.0)
    waiting_stale_worth: float = Field(default=2.0, ge=0.0)
    #: A planned refresh goes this long (plus the call's latency) before the data
    #: expires: the time data takes from the upstream's answer into the cache.
    refresh_margin: float = Field(default=0.5, ge=0.0)
    #: A slot is kept for a planned refresh only if it is worth this many times the call
    #: that would take the slot now (``policy.dispatch.Valuation.reserve_above``).
    reserve_above: float = Field(default=3.0, ge=1.0)
    #: At start-up, first fetches wait this long after the service's first request, so
    #: the first slots of a window go to the keys read most, not to the first ones read.
    #: 1 s did better in ``bench.policy_sim`` (4 traces x 6 seeds: fresh 0.940 against
    #: 0.934 of the optimum, critical 0.968 against 0.957), but worse with two workers on
    #: the tight trace (two bench runs each: 0.93 / 0.91 / 0.976 of the optima against
    #: 0.94 / 0.90 / 1.00), where orders from the other worker arrive after a topic hop.
    first_fetch_hold: float = Field(default=0.5, ge=0.0)
    #: Retries of failed calls (not 429s): attempts after the first, with exponential
    #: backoff and full jitter from retry_base up to retry_cap, within retry_deadline.
    retry_attempts: int = Field(default=3, ge=0)
    retry_base: Duration = 0.5
    retry_cap: Duration = 10.0
    retry_deadline: Duration = 30.0
    #: Consecutive failures that open the circuit breaker, and how long it stays open.
    breaker_failures: int = Field(default=5, gt=0)
    breaker_cooldown: Duration = 30.0
    #: Pause after a 429 that carries no usable Retry-After.
    default_retry_after: Duration = 60.0
    #: Fetches waiting for budget; beyond it the lowest priority, newest is dropped.
    queue_limit: int = Field(default=10_000, gt=0)
    endpoints: dict[str, EndpointConfig] = Field(default_factory=dict)


    @field_validator("priority_weights")
    @classmethod
    def _weights(cls, value: dict[str, float]) -> dict[str, float]:
        weights = {p.value: 1.0 for p in Priority} | value
        unknown = set(weights) - {p.value for p in Priority}
        if unknown:
            raise ValueError(f"unknown priorities {sorted(unknown)}")
        if not all(weight > 0.0 for weight in weights.values()):
            raise ValueError("each weight must be positive")
        return weights

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/?#]+", value):
            raise ValueError("base_url must be an http(s) URL")
        return value.rstrip("/")

    @field_validator("endpoints")
    @classmethod
    def _names(cls, value: dict[str, EndpointConfig]) -> dict[str, EndpointConfig]:
        return checked_names("endpoint", value)

    def limits_for(self, endpoint: str) -> list[RateLimit]:
        """The endpoint's own limits (its override, or the service's default)."""
        own = self.endpoints[endpoint].limits
        return list(own if own is not None else self.endpoint_limits)
