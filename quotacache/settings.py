"""Settings: the TOML contract of DESIGN.md, validated by pydantic, with env overrides.

A file is named by ``--config PATH`` or ``QUOTACACHE_CONFIG``; any setting can also be
overridden from the environment as ``QUOTACACHE_<SECTION>__<KEY>`` (e.g.
``QUOTACACHE_WEB__PORT=7000``). Built-in service profiles are merged under the
``[services.*]`` tables of the file, so a file only states what differs.
API keys are never read from the file: ``auth.env`` names the environment variable.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from quotacache.errors import ConfigError
from quotacache.units import Duration, Priority, RateLimit, parse_duration

__all__ = ["Duration", "Priority", "RateLimit", "parse_duration", "Settings", "load_settings"]

N = TypeVar("N")


def checked_names(kind: str, named: dict[str, N]) -> dict[str, N]:
    """Service and endpoint names appear in URLs, topic names and metrics labels."""
    for name in named:
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", name):
            raise ValueError(f"{kind} name {name!r} must be lower-case letters, digits, _")
    return named


class AuthConfig(BaseModel):
    """Where the API key goes (a query parameter or a header) and which env var holds it."""

    model_config = ConfigDict(extra="forbid")

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

    model_config = ConfigDict(extra="forbid")

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

    model_config = ConfigDict(extra="forbid")

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
    #: sent but decided again), half for the network.
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


class BrokerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = "embedded"
    embedded_port: int = Field(default=19092, gt=0, lt=65536)
    #: Of every topic and table. Unset: 1 on the embedded broker (which rescans every
    #: partition on every fetch, so idle CPU grows with it; one partition means one
    #: active worker), 4 on Kafka (up to four workers share the keys).
    partitions: int = Field(default=0, ge=0)
    #: Consumer long-poll while records flow (50 ms at most while a rebalance or recovery
    #: runs). Tansu answers a fetch at its next rescan of the log (about every half of
    #: this), never early on a produce: a topic hop costs up to half of it; every fetch
    #: and rescan costs CPU (``quotacache/dev/fetch_wait.py`` has the figures).
    fetch_wait: Duration = 0.35
    #: Long-poll once nothing was fetched or produced for ``idle_after``: fewer fetches
    #: and rescans while idle, at the price of up to half of it on the first hop after
    #: a quiet spell (a read's refresh). Equal to ``fetch_wait``: never idle.
    idle_fetch_wait: Duration = 2.0
    idle_after: Duration = 2.0
    #: How long Kafka keeps the records of the data topics and the dead letters
    #: (``retention.ms``, set when quotacache creates them): what their consumers can
    #: replay. The cache itself lives in compacted table changelogs, not in these.
    data_retention: Duration = 7 * 86400.0
    #: ... of the request topics (refresh, volatility, internal.*): a request that old is
    #: worthless. The embedded broker records both values but never deletes anything.
    request_retention: Duration = 86400.0
    #: Kafka's idempotent producer for the workers (no duplicate or reordered records
    #: from producer retries). Real Kafka only: the embedded broker has none.
    idempotence: bool = True
    #: Embedded broker: it keeps every record in memory and applies neither retention
    #: nor compaction, so the worker re-creates all its topics, seeded with what the
    #: tables hold, once this many records were added since the last time (0: never).
    #: About 1 KB of broker memory a record (README, "Bounded memory").
    rotate_records: int = Field(default=50_000, ge=0)
    #: ... or once the embedded broker's resident memory passes this many MB (0: never;
    #: the broker is found by its port on this machine) and grew by a quarter of it
    #: since the last rotation (what a rotation seeds stays: a big cache is a floor).
    rotate_broker_mb: int = Field(default=100, ge=0)
    #: How often the worker counts the records on its topics.
    rotate_check: Duration = 30.0

    @model_validator(mode="after")
    def _default_partitions(self) -> BrokerConfig:
        if not self.partitions:
            self.partitions = 1 if self.embedded else 4
        return self

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if value != "embedded" and not value.startswith("kafka://"):
            raise ValueError("broker.url is 'embedded' or 'kafka://host:port'")
        return value

    @property
    def embedded(self) -> bool:
        return self.url == "embedded"

    def kafka_url(self) -> str:
        if self.embedded:
            return f"kafka://127.0.0.1:{self.embedded_port}"
        return self.url

    def bootstrap_servers(self) -> str:
        return self.kafka_url().removeprefix("kafka://")


class WebConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=6066, gt=0, lt=65536)
    #: When set, every request that changes something (refresh, batch, symbols, strategy)
    #: must carry ``Authorization: Bearer <token>``. Best given by env:
    #: ``QUOTACACHE_WEB__TOKEN``.
    token: SecretStr | None = None
    #: Requests per second one client address may make (a token bucket; 0: no limit).
    #: Workers of the same app are not limited when they forward reads to each other.
    max_requests_per_second: float = Field(default=1000.0, ge=0)
    #: How many requests a client may make at once above that rate.
    request_burst: int = Field(default=2000, gt=0)

    def token_value(self) -> str | None:
        return self.token.get_secret_value() if self.token else None


class CacheConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: How often the sweeper looks for entries past ``max_staleness`` to tombstone.
    sweep_interval: Duration = 60.0
    #: How long a request waits for a fetch already in flight before another may start.
    inflight_timeout: Duration = 30.0



class SchedulerConfig(BaseModel):
    """The unified scheduler: monitored symbols, strategies, volatility."""

    model_config = ConfigDict(extra="forbid")

    #: How often the leader publishes refresh requests for monitored keys.
    scan_interval: Duration = 5.0
    #: How often each service's owner re-evaluates its strategy from budget use.
    evaluate_interval: Duration = 5.0
    conservative_above: float = Field(default=0.8, gt=0, le=1)
    minimal_above: float = Field(default=0.9, gt=0, le=1)
    normal_below: float = Field(default=0.4, ge=0, lt=1)
    #: Seconds after a change before an automatic step back towards NORMAL.
    min_dwell: Duration = 60.0
    volatility_threshold: float = Field(default=0.7, ge=0, le=1)
    volatility_duration: Duration = 600.0
    #: Refresh point as a multiple of the TTL, per strategy. The seed's intervals by
    #: priority (critical / high / medium / low, minutes) are AGGRESSIVE 2/5/10/30, NORMAL
    #: 5/10/20/60, CONSERVATIVE 10/20/40/120, MINIMAL 20/40/80/240: half, once, twice and
    #: four times the NORMAL pace, which with TTLs as refresh periods gives these factors.
    factors: dict[str, float] = Field(default_factory=lambda: {
        "AGGRESSIVE": 0.5, "NORMAL": 1.0, "CONSERVATIVE": 2.0, "MINIMAL": 4.0})
    #: What a monitored symbol is kept fresh for when no endpoints are given.
    default_endpoints: list[str] = Field(default_factory=lambda: [
        "cryptometer/ticker", "cryptometer/ls_ratio", "cryptometer/open_interest",
        "cryptometer/liquidation_data_v2", "kingfisher/liquidation_map"])


    @model_validator(mode="after")
    def _order(self) -> SchedulerConfig:
        if not self.normal_below < self.conservative_above <= self.minimal_above:
            raise ValueError("need normal_below < conservative_above <= minimal_above")
        known = {"AGGRESSIVE", "NORMAL", "CONSERVATIVE", "MINIMAL"}
        if set(self.factors) != known or any(f <= 0 for f in self.factors.values()):
            raise ValueError(f"factors needs a positive factor for each of {sorted(known)}")
        return self


class Settings(BaseSettings):
    """Everything quotacache needs to run; see the module docstring for sources."""

    model_config = SettingsConfigDict(env_prefix="QUOTACACHE_", env_nested_delimiter="__",
                                      extra="forbid")

    app_id: str = "quotacache"
    topic_prefix: str = "quotacache."
    data_dir: Path = Path("quotacache-data")
    #: Where each worker journals the upstream calls it sends, so spent budget survives
    #: any restart (default: quotacache-journal beside data_dir; never inside it, since
    #: a data dir is wiped when the broker is new). Workers of one app on one machine
    #: share it.
    journal_dir: Path | None = None
    #: fsync the journal after every call: survives a power loss, costs a disk flush.
    limits_fsync: bool = False
    #: The worker's event loop: uvloop (installed with quotacache, except on Windows)
    #: costs about a third less CPU per request than asyncio's own.
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    #: Built-in profiles to include. Unset: both when no service is configured, else
    #: only those whose services the file configures (to override them).
    profiles: list[str] = Field(default_factory=list)
    broker: BrokerConfig = Field(default_factory=BrokerConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    services: dict[str, ServiceConfig] = Field(default_factory=dict)

    @field_validator("app_id", "topic_prefix")
    @classmethod
    def _kafka_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9._-]+", value):
            raise ValueError("use letters, digits, '.', '_' and '-' only")
        return value

    @field_validator("services")
    @classmethod
    def _service_names(cls, value: dict[str, ServiceConfig]) -> dict[str, ServiceConfig]:
        return checked_names("service", value)

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                   init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Env overrides the file; the file's values arrive as init kwargs (see load_settings).
        return (env_settings, init_settings)

    def service(self, name: str) -> ServiceConfig:
        return self.services[name]


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _format_error(exc: ValidationError, origin: str) -> str:
    lines = [f"invalid configuration ({origin}):"]
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or "(top level)"
        lines.append(f"  {key}: {err['msg']}")
    return "\n".join(lines)


def load_settings(path: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Read the TOML file (or ``QUOTACACHE_CONFIG``), merge built-in profiles, validate.

    Raises ConfigError with every bad key named.
    """
    from quotacache.services import PROFILES

    path = path or os.environ.get("QUOTACACHE_CONFIG")
    raw: dict[str, Any] = {}
    origin = "defaults"
    if path:
        origin = str(path)
        try:
            raw = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"configuration file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    raw = _merge(raw, overrides)
    own = raw.get("services", {})
    if "profiles" in raw:
        profiles = raw["profiles"]
    elif not own:  # nothing configured: both built-in services, as the demo runs them
        profiles = ["cryptometer", "kingfisher"]
    else:  # only the profiles whose services the file names (to override them)
        profiles = [name for name, services in PROFILES.items()
                    if isinstance(own, dict) and set(services) & set(own)]
    if not isinstance(profiles, list):
        raise ConfigError(f"invalid configuration ({origin}):\n  profiles: must be a list")
    services: dict[str, Any] = {}
    for profile in profiles:
        if profile not in PROFILES:
            raise ConfigError(f"invalid configuration ({origin}):\n  profiles: unknown profile "
                              f"{profile!r} (known: {', '.join(sorted(PROFILES))})")
        services = _merge(services, PROFILES[profile])
    raw["profiles"] = profiles
    raw["services"] = _merge(services, own)
    try:
        return Settings(**raw)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, origin)) from None
