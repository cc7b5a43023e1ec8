"""LocalReplica.start keeps its timeout against a broker that takes connections and never
answers (a real listening socket on loopback; no Kafka needed)."""

import asyncio

import pytest

from quotacache.client.replica import LocalReplica
from quotacache.settings import load_settings


async def test_a_start_against_a_silent_broker_ends_at_its_timeout_with_nothing_left():
    connections = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)  # read nothing, answer nothing

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = load_settings(broker={"url": f"kafka://127.0.0.1:{port}"})
    replica = LocalReplica(settings, services=["cryptometer"])
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        with pytest.raises(TimeoutError):
            await replica.start(timeout=1.0)
        took = loop.time() - started
    finally:
        for writer in connections:
            writer.close()
        server.close()
        await server.wait_closed()
    assert connections, "the replica never reached the broker"
    assert took < 5.0  # aiokafka's own request timeout is 40 s
    assert replica._consumer._closed
