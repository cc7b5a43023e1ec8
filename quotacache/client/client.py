"""The Python client: publish refresh requests to the topics, read the cache over HTTP.

Producers key each refresh request by its cache key in JSON, so the worker that owns the
key admits it without re-keying it first.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from quotacache.errors import QuotacacheError
from quotacache.settings import Priority, Settings
from quotacache.streams.records import (
    RefreshRequest,
    VolatilitySignal,
    cache_key,
    resolve_target,
)

#: How long ``Client.get_or_fetch`` waits for a refresh by default (seconds).
DEFAULT_WAIT = 1.0
#: The longest a call to a worker takes by default, whole answer included (seconds):
#: httpx's own timeout bounds each read, and a server that drips a byte now and then
#: never ends one.
CALL_TIMEOUT = 10.0


class Client:
    """Talks to one quotacache deployment: its broker for requests, a worker for reads."""

    def __init__(self, settings: Settings, base_url: str | None = None, *,
                 transport: httpx.AsyncBaseTransport | None = None,
                 timeout: float = CALL_TIMEOUT):
        self.settings = settings
        #: The longest a call takes, whole answer included (``get_or_fetch``: plus its wait).
        self.timeout = timeout
        self.base_url = base_url or f"http://{settings.web.host}:{settings.web.port}"
        self._producer: AIOKafkaProducer | None = None
        token = settings.web.token_value()
        #: The largest answer read: an entry holds an upstream answer of at most its
        #: service's ``max_answer_bytes``, escaped in JSON (up to twice as long).
        self.max_answer_bytes = 2 * max((cfg.max_answer_bytes for cfg in
                                         settings.services.values()), default=0) + 2**20
        #: The worker never compresses: answers are asked for, and read, as they are sent
        #: (a compressed answer could inflate a thousandfold past the size cap per read).
        headers = {"Accept-Encoding": "identity"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout,
                                       transport=transport, headers=headers)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _started_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            self._producer = AIOKafkaProducer(
                bootstrap_servers=self.settings.broker.bootstrap_servers(), linger_ms=5)
            await self._producer.start()
        return self._producer

    async def request_refresh(self, service: str, endpoint: str, symbol: str = "*", *,
                              priority: Priority | None = None, force: bool = False) -> None:
        """Publish one refresh request (validated here first)."""
        await self.request_many([RefreshRequest(service=service, endpoint=endpoint,
                                                symbol=symbol, priority=priority, force=force)])

    async def request_many(self, requests: Iterable[RefreshRequest]) -> int:
        producer = await self._started_producer()
        topic = self.settings.topic_prefix + "refresh"
        sent = 0
        for request in requests:
            try:  # keyed where the worker files it: no re-keying hop on the broker
                _, key = resolve_target(self.settings, request.service, request.endpoint,
                                        request.symbol)
            except QuotacacheError:  # not in our config: the worker dead-letters it
                key = cache_key(request.service, request.endpoint, request.symbol)
            await producer.send(topic, value=request.to_json(), key=json.dumps(key).encode())
            sent += 1
        await producer.flush()
        return sent

    async def signal_volatility(self, symbol: str, score: float) -> None:
        """Publish a volatility signal (0..1, ``*`` for every symbol) for the scheduler."""
        signal = VolatilitySignal(symbol=symbol, score=score)
        producer = await self._started_producer()
        await producer.send_and_wait(self.settings.topic_prefix + "volatility",
                                     value=signal.to_json(), key=signal.symbol.encode())

    async def get(self, service: str, endpoint: str, symbol: str = "*") -> dict[str, Any]:
        """The cache entry as the HTTP API answers it (status HIT, STALE or MISS)."""
        return await self._call("GET", f"/cache/{service}/{endpoint}/{symbol}")

    async def get_or_fetch(self, service: str, endpoint: str, symbol: str = "*", *,
                           max_age: float | None = None, wait: float = DEFAULT_WAIT
                           ) -> dict[str, Any]:
        """The entry, fetched first if it is missing, stale, or older than ``max_age``: the
        seed's ``get_or_fetch``.

        Waits at most ``wait`` seconds (default ``DEFAULT_WAIT``, 1 s: a refresh that can
        be sent lands in about 0.2 s plus the upstream's answer time; at most 60) for that
        one refresh, then answers with what there is, never an exception: ``status`` HIT
        when the refresh landed, STALE with the old data and its ``age`` when it did not,
        or MISS with ``data`` None when there is no entry at all (the refresh stays
        requested; a later call may find it). So a loop over a key that cannot be fetched
        now (budget spent, upstream down) gets a MISS every ``wait`` seconds instead of
        hanging: check ``entry["status"]``. ``wait=0`` answers at once.
        """
        params: dict[str, Any] = {"wait": wait}
        if max_age is not None:
            params["max_age"] = max_age
        return await self._call("GET", f"/cache/{service}/{endpoint}/{symbol}",
                                params=params, timeout=wait + self.timeout)

    async def _call(self, method: str, path: str, body: Any = None, *,
                    timeout: float | None = None, **options: Any) -> dict[str, Any]:
        """One HTTP call, answered whole within ``timeout`` (default: the client's; else
        httpx.ReadTimeout); a 4xx/5xx raises HTTPStatusError carrying the API's message,
        an answer that is not a JSON object, or longer than ``max_answer_bytes``, raises
        httpx.DecodingError."""
        timeout = self.timeout if timeout is None else timeout
        request = self._http.build_request(method, path, json=body, timeout=timeout,
                                           **options)
        try:
            async with asyncio.timeout(timeout):
                response = await self._http.send(request, stream=True)
                try:
                    content = await self._read_capped(response)
                finally:
                    await response.aclose()
        except TimeoutError:
            raise httpx.ReadTimeout(f"{method} {path}: no whole answer in {timeout:g} s",
                                    request=request) from None
        try:
            answer = json.loads(content)
        except ValueError:
            answer = None
        if response.status_code >= 400:
            message = answer.get("error") if isinstance(answer, dict) else None
            text = content[:200].decode(errors="replace").strip()
            raise httpx.HTTPStatusError(str(message or text or response.reason_phrase),
                                        request=request, response=response)
        if not isinstance(answer, dict):
            raise httpx.DecodingError(
                f"{method} {path} answered {response.status_code} with "
                f"{response.headers.get('Content-Type') or 'no content type'}, not a JSON "
                "object", request=request)
        return answer

    async def _read_capped(self, response: httpx.Response) -> bytes:
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            if response.status_code >= 400:
                return b""  # a refusal (a proxy's, compressed): its status says it, unread
            raise httpx.DecodingError(
                f"{response.request.method} {response.request.url.path} answered with "
                f"Content-Encoding {encoding!r}, which a worker never sends",
                request=response.request)
        chunks, size = [], 0
        async for chunk in response.aiter_bytes():  # identity: as sent
            size += len(chunk)
            if size > self.max_answer_bytes:
                raise httpx.DecodingError(
                    f"{response.request.method} {response.request.url.path} answered more "
                    f"than {self.max_answer_bytes} bytes", request=response.request)
            chunks.append(chunk)
        return b"".join(chunks)

    async def stats(self) -> dict[str, Any]:
        return await self._call("GET", "/stats")

    async def status(self) -> dict[str, Any]:
        return await self._call("GET", "/status")

    async def snapshot(self) -> dict[str, Any]:
        """The dashboard's figures: stats of every worker and each service's status."""
        return await self._call("GET", "/dashboard/snapshot")

    async def batch_update(self, symbols: list[str], endpoints: list[str], *,
                           priority: Priority | None = None, force: bool = False
                           ) -> dict[str, Any]:
        """Refresh symbols x endpoints ("service/endpoint"); list endpoints cost one call."""
        body: dict[str, Any] = {"symbols": symbols, "endpoints": endpoints, "force": force}
        if priority is not None:
            body["priority"] = Priority(priority).value
        return await self._call("POST", "/batch", body)

    async def monitor(self, symbols: list[str], endpoints: list[str] | None = None
                      ) -> dict[str, Any]:
        """Keep these symbols fresh from now on (the seed's ``schedule_update``)."""
        body: dict[str, Any] = {"symbols": symbols}
        if endpoints:
            body["endpoints"] = endpoints
        return await self._call("POST", "/symbols", body)

    async def unmonitor(self, symbols: list[str]) -> dict[str, Any]:
        return await self._call("DELETE", "/symbols", {"symbols": symbols})

    async def monitored(self) -> dict[str, Any]:
        return await self._call("GET", "/symbols")

    async def set_strategy(self, service: str, strategy: str | None) -> dict[str, Any]:
        """Pin a service's strategy, or release the pin with ``None``."""
        body: dict[str, Any] = {"service": service}
        body.update({"strategy": strategy} if strategy else {"release": True})
        return await self._call("POST", "/strategy", body)

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        await self._http.aclose()
