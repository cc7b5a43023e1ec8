"""The broker's cluster id, which changes when a memory-only broker restarts empty.

The worker asks for it every 5 s (``worker.watch_broker``). An admin client made for
each question cost two new connections and three metadata requests naming every topic,
decoded in pure Python (a zipf bench run: 128 metadata requests and 59 connections
before, 77 and 25 after). ``ClusterIds`` keeps one client and asks a metadata request
that names no topic; a broken connection is replaced by a new client within the same
question (which is how a restarted broker is met).
"""

from __future__ import annotations

import asyncio
from typing import Any


class ClusterIds:
    def __init__(self, bootstrap: str, timeout: float = 10.0):
        self.bootstrap = bootstrap
        self.timeout = timeout
        self._client: Any = None

    async def get(self) -> str:
        """The cluster id ("" from a broker that does not tell); raises when unreachable.
        A kept connection that fails is replaced at once, once: a restarted broker is
        met on this question, not the next."""
        while True:
            kept = self._client is not None
            try:
                return await self._ask()
            except Exception:
                await self.close()
                if not kept:
                    raise
            except BaseException:  # cancelled: no new client, no retry
                self._client = None
                raise

    async def _ask(self) -> str:
        from aiokafka.client import AIOKafkaClient
        from aiokafka.protocol.metadata import MetadataRequest

        if self._client is None:
            self._client = AIOKafkaClient(bootstrap_servers=self.bootstrap,
                                          request_timeout_ms=int(self.timeout * 1000))
            await asyncio.wait_for(self._client.bootstrap(), self.timeout)
        node = self._client.get_random_node()
        answer = await asyncio.wait_for(
            self._client.send(node, MetadataRequest(topics=[])), self.timeout)
        return str(getattr(answer, "cluster_id", "") or "")

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()


async def cluster_id(bootstrap: str, timeout: float = 10.0) -> str:
    """The cluster id, asked once."""
    ids = ClusterIds(bootstrap, timeout)
    try:
        return await ids.get()
    finally:
        await ids.close()
