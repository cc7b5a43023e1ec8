"""The settings of the worker's own parts: broker, web, cache and scheduler."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from quotacache.units import Duration


class BrokerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

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
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

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
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    #: How often the sweeper looks for entries past ``max_staleness`` to tombstone.
    sweep_interval: Duration = 60.0
    #: How long a request waits for a fetch already in flight before another may start.
    inflight_timeout: Duration = 30.0



class SchedulerConfig(BaseModel):
    """The unified scheduler: monitored symbols, strategies, volatility."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

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
