"""Requests and answers of the HTTP API as pydantic models: one source for validation and
OpenAPI.

A body that does not fit its model is a 400 whose message names the field
(``symbols: List should have at least 1 item``); the same models generate the request
schemas of ``/openapi.json``, so the documentation cannot drift from what is accepted.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from aiohttp import web as aioweb
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from quotacache.policy.strategy import Strategy
from quotacache.streams.records import RefreshTarget
from quotacache.units import Priority
from quotacache.web.errors import HttpError

#: Request bodies larger than this are refused (413 from aiohttp, 400 here).
MAX_BODY_BYTES = 256 * 1024
#: Symbol x endpoint pairs one POST /batch may ask for.
MAX_BATCH = 2000
#: The longest a reader may wait for a refresh (``?wait=SECONDS``).
MAX_WAIT = 60.0

Names = Annotated[list[str], Field(min_length=1)]


class Body(BaseModel):
    """As strict as a refresh message (``RefreshTarget``): unknown fields are refused with
    their name, so a misspelt option is not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class BatchBody(Body):
    """POST /batch: every symbol x endpoint (list endpoints are asked once)."""

    symbols: Names
    endpoints: Names = Field(description='"service/endpoint" names')
    priority: Priority | None = None
    force: bool = False


class MonitorBody(Body):
    """POST /symbols: keep these symbols fresh on these endpoints (default: configured)."""

    symbols: Names
    endpoints: Names | None = None


class UnmonitorBody(Body):
    """DELETE /symbols: stop keeping these symbols fresh."""

    symbols: Names


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


class StrategyBody(Body):
    """POST /strategy: pin a service's strategy, or release the pin."""

    service: str
    strategy: Annotated[Strategy, BeforeValidator(_upper)] | None = None
    release: bool = False


class ReadQuery(BaseModel):
    """GET /cache/...: the query of a read (other parameters are ignored)."""

    wait: float = Field(0.0, ge=0, le=MAX_WAIT, allow_inf_nan=False,
                        description="seconds to hold a MISS or STALE answer until its "
                                    "refresh lands")
    max_age: float | None = Field(None, gt=0, allow_inf_nan=False,
                                  description="seconds: older data is not fresh for this read")


class CacheAnswer(BaseModel):
    """GET /cache/...: one entry, HIT, STALE (with its age) or MISS (no data yet)."""

    model_config = ConfigDict(extra="forbid")

    service: str
    endpoint: str
    symbol: str
    status: Literal["HIT", "STALE", "MISS"]
    fresh: bool
    data: Any
    fetched_at: float | None
    age: float | None
    ttl: float
    refresh_requested: bool


#: POST /refresh takes exactly what a refresh message on the topic carries.
RefreshBody = RefreshTarget

M = TypeVar("M", bound=BaseModel)


def describe(exc: ValidationError) -> str:
    """``field: problem`` for each error, the way a user can fix it."""
    parts = []
    for err in exc.errors():
        if err["type"] == "json_invalid":
            return f"body is not JSON: {err['ctx'].get('error', err['msg'])}"
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def parse_query(request: aioweb.Request, model: type[M]) -> M:
    """The request's query as ``model``; HttpError 400 naming the bad parameter."""
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        raise HttpError(400, describe(exc)) from None


async def parse_body(request: aioweb.Request, model: type[M]) -> M:
    """The request's JSON body as ``model``; HttpError 400 naming what is wrong."""
    raw = await request.read()
    if len(raw) > MAX_BODY_BYTES:
        raise HttpError(400, f"body is larger than {MAX_BODY_BYTES} bytes")
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        raise HttpError(400, describe(exc)) from None
