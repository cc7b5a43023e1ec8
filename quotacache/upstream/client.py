"""The upstream client: one httpx.AsyncClient per service, building URLs only from config.

Request data reaches an upstream URL only as the validated symbol, formatted into the
endpoint's configured parameter; paths, hosts and other parameters come from the
configuration. Errors never carry the URL's query or the key (the key may be in it).
Tests swap the network through ``transport`` (e.g. ``httpx.MockTransport``).

What comes back is treated as hostile: the body is streamed, decompressed here in steps
no larger than the room left, and the call abandoned once it passes
``max_answer_bytes`` (memory stays bounded whatever the upstream sends, a zip bomb too), the
whole call (connect, headers, body) ends at ``call_deadline`` however slowly the bytes
come, and the service's key is scrubbed from the body before it is parsed, so an
upstream that echoes the request URL cannot carry the key into topics, tables or
answers.
"""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from quotacache.errors import UpstreamError
from quotacache.policy.upstream import parse_retry_after
from quotacache.redact import MASK, forms
from quotacache.settings import ServiceConfig

USER_AGENT = "quotacache/0.1"


@dataclass(frozen=True)
class UpstreamAnswer:
    data: Any
    headers: httpx.Headers


#: The encodings asked for, and decoded here step by step (``_get``).
ACCEPT_ENCODING = "gzip, deflate"


def _inflater(where: str, encoding: str | None) -> Any:
    """A zlib decoder for a gzip or deflate answer; None for one sent as it is."""
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        return None
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise UpstreamError(f"{where}: answer in an encoding not asked for: {encoding[:40]!r}",
                            retryable=False)
    return zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib header, detected


def _inflate(where: str, inflater: Any, data: bytes, room: int) -> bytes:
    try:
        return bytes(inflater.decompress(data, room))
    except zlib.error:
        raise UpstreamError(f"{where}: answer is not valid gzip or deflate",
                            retryable=False) from None


async def _already_read(response: httpx.Response) -> AsyncIterator[bytes]:
    yield response.content


class UpstreamClient:
    """Fetches one endpoint's data for one symbol from one configured service."""

    def __init__(self, name: str, config: ServiceConfig,
                 transport: httpx.AsyncBaseTransport | None = None):
        self.name = name
        self.config = config
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": ACCEPT_ENCODING,
                   **config.headers}
        secret = config.auth.secret() if config.auth else None
        #: The key as an upstream could echo it: plain and URL-encoded.
        self._secret_forms = sorted((f.encode() for f in (forms(secret) if secret else ())
                                     if len(f) >= 4), key=len, reverse=True)
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
        where = f"{self.name}/{endpoint}"
        deadline = self.config.call_deadline
        try:
            async with asyncio.timeout(deadline):
                status, headers, raw = await self._get(endpoint, symbol, where)
        except TimeoutError:
            raise UpstreamError(f"{where}: no complete answer within {deadline:g}s") from None
        except httpx.TimeoutException:
            raise UpstreamError(f"{where}: timed out after {self.config.timeout:g}s") from None
        except httpx.HTTPError as exc:
            raise UpstreamError(f"{where}: {type(exc).__name__}") from None
        if status == 429:
            raise UpstreamError(f"{where}: rate limited (429)", status=429,
                                retry_after=parse_retry_after(headers.get("Retry-After"), now))
        if not 200 <= status < 300:  # a redirect's body is not the data either
            raise UpstreamError(f"{where}: HTTP {status}", status=status,
                                retryable=status >= 500)
        try:
            body = json.loads(self._scrub(raw))
        except (ValueError, RecursionError):  # bad syntax or UTF-8, huge ints, deep nesting
            raise UpstreamError(f"{where}: answer is not JSON", status=status,
                                retryable=False) from None
        return UpstreamAnswer(self._unwrap(where, body), headers)

    async def _get(self, endpoint: str, symbol: str, where: str
                   ) -> tuple[int, httpx.Headers, bytes]:
        """Status, headers and body, read only up to ``max_answer_bytes``."""
        spec = self.config.endpoints[endpoint]
        cap = self.config.max_answer_bytes
        params = {**self.params_for(endpoint, symbol), **self._query_auth}
        async with self._client.stream("GET", spec.path, params=params) as response:
            if not 200 <= response.status_code < 300:  # the body of a refusal is not needed
                return response.status_code, response.headers, b""
            if response.is_stream_consumed:  # read and decoded by the transport already
                inflater, raw = None, _already_read(response)  # (httpx.MockTransport)
            else:
                inflater = _inflater(where, response.headers.get("Content-Encoding"))
                raw = response.aiter_raw()
            chunks: list[bytes] = []
            size = 0
            async for data in raw:
                while data:  # decoded in steps of at most what the cap leaves: a zip bomb
                    if inflater is None:  # stops at the cap, not after inflating a read
                        chunk, data = data, b""
                    else:
                        chunk = _inflate(where, inflater, data, cap - size + 1)
                        data = inflater.unconsumed_tail
                    size += len(chunk)
                    if size > cap:
                        raise UpstreamError(f"{where}: answer larger than {cap} bytes",
                                            retryable=False)
                    chunks.append(chunk)
            if inflater is not None:
                chunks.append(inflater.flush(cap - size + 1))
            return response.status_code, response.headers, b"".join(chunks)

    def _scrub(self, raw: bytes) -> bytes:
        mask = MASK.encode()
        for form in self._secret_forms:
            raw = raw.replace(form, mask)
        return raw

    def _unwrap(self, where: str, body: Any) -> Any:
        if self.config.envelope != "cryptometer":
            return body
        if not isinstance(body, dict):
            raise UpstreamError(f"{where}: answer is not a JSON object", retryable=False)
        if str(body.get("success", "")).lower() != "true":
            message = body.get("error") or body.get("message") or "success is not true"
            raise UpstreamError(f"{where}: upstream error: {str(message)[:200]}")
        if "data" in body:
            return body["data"]
        return {k: v for k, v in body.items() if k not in ("success", "error")}

    async def aclose(self) -> None:
        await self._client.aclose()
