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
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from quotacache.errors import ConfigError
from quotacache.settings.upstream import (
    AuthConfig,
    EndpointConfig,
    ServiceConfig,
    checked_names,
)
from quotacache.settings.worker import BrokerConfig, CacheConfig, SchedulerConfig, WebConfig
from quotacache.units import Duration, Priority, RateLimit, parse_duration

__all__ = ["AuthConfig", "BrokerConfig", "CacheConfig", "Duration", "EndpointConfig",
           "Priority", "RateLimit", "SchedulerConfig", "ServiceConfig", "Settings",
           "WebConfig", "load_settings", "parse_duration"]


class Settings(BaseSettings):
    """Everything quotacache needs to run; see the module docstring for sources."""

    model_config = SettingsConfigDict(env_prefix="QUOTACACHE_", env_nested_delimiter="__",
                                      extra="forbid", allow_inf_nan=False)

    app_id: str = "quotacache"
    topic_prefix: str = "quotacache."
    data_dir: Path = Path("quotacache-data")
    #: Where each worker journals the upstream calls it sends, so spent budget survives
    #: any restart (default: quotacache-journal beside an absolute data_dir, else in
    #: $XDG_STATE_HOME/quotacache/journal: never inside a data dir, which is wiped when
    #: the broker is new, nor where the working directory decides). Workers of one app on
    #: one machine share it.
    journal_dir: Path | None = None
    #: fsync the journal after every call: survives a power loss, costs a disk flush.
    limits_fsync: bool = False
    #: The worker's event loop: uvloop (installed with quotacache, except on Windows)
    #: costs about a third less CPU per request than asyncio's own.
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    #: How long a stop (SIGTERM, SIGINT) may take before the process exits anyway: with
    #: the broker unreachable, Faust's stop would wait for ever on records it cannot
    #: deliver (they are lost either way).
    stop_timeout: Duration = Field(default=20.0, gt=0)
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
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"configuration file not found: {path}") from None
        except (OSError, UnicodeDecodeError) as exc:  # a directory, no permission, binary
            reason = (exc.strerror or str(exc)) if isinstance(exc, OSError) else "not UTF-8 text"
            raise ConfigError(f"cannot read the configuration file {str(path)!r}: {reason}"
                              ) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    raw = _merge(raw, overrides)
    own = raw.get("services", {})
    if not isinstance(own, dict):  # merged with the profiles below: say so before that
        raise ConfigError(f"invalid configuration ({origin}):\n  services: must be a table "
                          "of services ([services.NAME])")
    if "profiles" in raw:
        profiles = raw["profiles"]
    elif not own:  # nothing configured: both built-in services, as the demo runs them
        profiles = ["cryptometer", "kingfisher"]
    else:  # only the profiles whose services the file names (to override them)
        profiles = [name for name, services in PROFILES.items() if set(services) & set(own)]
    if not isinstance(profiles, list) or not all(isinstance(p, str) for p in profiles):
        raise ConfigError(f"invalid configuration ({origin}):\n  profiles: must be a list "
                          "of profile names")
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
