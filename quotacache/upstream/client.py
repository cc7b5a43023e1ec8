"""The upstream client: one httpx.AsyncClient per service, building URLs only from config.

Request data reaches an upstream URL only as the validated symbol, formatted into the
endpoint's configured parameter; paths, hosts and other parameters come from the
configuration. Errors never carry the URL's query or the key (the key may be in it).
Tests swap the network through ``transport`` (e.g. ``httpx.MockTransport``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from quotacache.errors import UpstreamError
from quotacache.settings import ServiceConfig

USER_AGENT = "quotacache/0.1"
MAX_ANSWER_BYTES = 8 * 1024 * 1024


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError, IndexError):
        return None


@dataclass(frozen=True)
class UpstreamAnswer:
    data: Any
    headers: httpx.Headers


class UpstreamClient:
    """Fetches one endpoint's data for one symbol from one configured service."""

    def __init__(self, name: str, config: ServiceConfig,
                 transport: httpx.AsyncBaseTransport | None = None):
        self.name = name
        self.config = config
        headers = {"User-Agent": USER_AGENT, **config.headers}
        secret = config.auth.secret() if config.auth else None
        self._query_auth: dict[str, str] = {}
        if config.auth and secret:
            if config.auth.header:
                headers[config.auth.header] = secret
            else:
                self._query_auth[str(config.auth.query)] = secret
        self._client = httpx.AsyncClient(base_url=config.base_url, headers=headers,
                                         timeout=config.timeout, transport=transport,
                                         follow_redirects=False)

    def params_for(self, endpoint: str, symbol: str) -> dict[str, str]:
        """The query parameters for a call, without the key."""
        spec = self.config.endpoints[endpoint]
        params = dict(spec.params)
        if spec.symbol_param and symbol != "*":
            params[spec.symbol_param] = spec.symbol_format.format(
                symbol=symbol, symbol_lower=symbol.lower())
        return params

    async def fetch(self, endpoint: str, symbol: str, now: float) -> UpstreamAnswer:
        """One upstream call. Raises UpstreamError (with status/retry_after) on any failure."""
        spec = self.config.endpoints[endpoint]
        where = f"{self.name}/{endpoint}"
        try:
            response = await self._client.get(
                spec.path, params={**self.params_for(endpoint, symbol), **self._query_auth})
        except httpx.TimeoutException:
            raise UpstreamError(f"{where}: timed out after {self.config.timeout:g}s") from None
        except httpx.HTTPError as exc:
            raise UpstreamError(f"{where}: {type(exc).__name__}") from None
        if response.status_code == 429:
            raise UpstreamError(f"{where}: rate limited (429)", status=429,
                                retry_after=parse_retry_after(
                                    response.headers.get("Retry-After"), now))
        if response.status_code >= 400:
            raise UpstreamError(f"{where}: HTTP {response.status_code}",
                                status=response.status_code)
        if len(response.content) > MAX_ANSWER_BYTES:
            raise UpstreamError(f"{where}: body of {len(response.content)} bytes is too large")
        try:
            body = json.loads(response.content)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise UpstreamError(f"{where}: answer is not JSON",
                                status=response.status_code) from None
        return UpstreamAnswer(self._unwrap(where, body), response.headers)

    def _unwrap(self, where: str, body: Any) -> Any:
        if self.config.envelope != "cryptometer":
            return body
        if not isinstance(body, dict):
            raise UpstreamError(f"{where}: answer is not a JSON object")
        if str(body.get("success", "")).lower() != "true":
            message = body.get("error") or body.get("message") or "success is not true"
            raise UpstreamError(f"{where}: upstream error: {str(message)[:200]}")
        if "data" in body:
            return body["data"]
        return {k: v for k, v in body.items() if k not in ("success", "error")}

    async def aclose(self) -> None:
        await self._client.aclose()
