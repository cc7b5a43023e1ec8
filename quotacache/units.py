"""Value types of the configuration: durations, priorities and rate limits."""

from __future__ import annotations

import math
import re
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|m|min|h|hr|d)?\s*$", re.IGNORECASE)
_UNIT_SECONDS = {None: 1.0, "ms": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0,
                 "h": 3600.0, "hr": 3600.0, "d": 86400.0}


def parse_duration(value: Any) -> float:
    """Seconds from ``90``, ``"30s"``, ``"2m"``, ``"1h"``, ``"6h"``, ``"1d"``."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '2m'")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a duration (use e.g. 30s, 2m, 1h)")
        unit = match.group(2).lower() if match.group(2) else None
        seconds = float(match.group(1)) * _UNIT_SECONDS[unit]
    if not math.isfinite(seconds) or seconds <= 0:  # nan <= 0 is False
        raise ValueError("a duration must be a positive, finite number of seconds")
    return seconds


class Priority(StrEnum):
    """How much an endpoint's freshness matters when the budget is short."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def rank(self) -> int:
        """0 for critical up to 3 for low: lower ranks are served first."""
        return list(Priority).index(self)


class RateLimit(BaseModel):
    """At most ``calls`` upstream calls in any window of ``seconds`` seconds."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    calls: int = Field(gt=0)
    seconds: float = Field(gt=0)

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*", value)
            if not match:
                raise ValueError(f"{value!r} is not a limit (use calls/seconds, e.g. '100/60')")
            return {"calls": int(match.group(1)), "seconds": float(match.group(2))}
        return value

    def __str__(self) -> str:
        return f"{self.calls}/{self.seconds:g}"


#: Seconds, written as a number or "30s", "2m", "1h", "1d" in the configuration.
Duration = Annotated[float, BeforeValidator(parse_duration)]
