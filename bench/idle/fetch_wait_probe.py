"""Tansu's fetch behaviour: delivery latency per fetch wait, broker CPU per partitions.

    python -m bench.idle.fetch_wait_probe

A record produced while a fetch waits W ms arrives after a delay uniform in [0, W/2]
(Tansu rescans at W/2, 3W/4, ... and is not woken by a produce); every rescan reads
every partition the fetch names, so the broker's CPU grows with partitions x fetches.
"""

from __future__ import annotations

import asyncio
import random
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.systems import cpu_seconds
from quotacache.dev.broker import EmbeddedBroker, ensure_topics, free_port


async def latency(bootstrap: str, wait_ms: int, n: int = 10) -> list[float]:
    await ensure_topics(bootstrap, ["lat"], 1)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                fetch_max_wait_ms=wait_ms)
    await consumer.start()
    tp = TopicPartition("lat", 0)
    consumer.assign([tp])
    await consumer.seek_to_end(tp)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    delays: list[float] = []

    async def consume() -> None:
        while len(delays) < n:
            batch = await consumer.getmany(timeout_ms=5000)
            now = time.time()
            delays.extend(now - float(m.value) for ms in batch.values() for m in ms)

    task = asyncio.create_task(consume())
    for _ in range(n):
        await asyncio.sleep(random.uniform(0.3, 1.3))
        await producer.send_and_wait("lat", str(time.time()).encode())
    await asyncio.wait_for(task, 20)
    await producer.stop()
    await consumer.stop()
    return delays


async def cost(bootstrap: str, pid: int, partitions: int, wait_ms: int,
               seconds: float = 10) -> float:
    """Broker CPU (% of a core) while one consumer polls ``partitions`` empty partitions."""
    names = [f"cost{partitions}-{i}" for i in range(partitions)]
    await ensure_topics(bootstrap, names, 1)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                fetch_max_wait_ms=wait_ms)
    await consumer.start()
    tps = [TopicPartition(name, 0) for name in names]
    consumer.assign(tps)
    await consumer.seek_to_end(*tps)
    await consumer.getmany(timeout_ms=500)
    cpu, began = cpu_seconds([pid]), time.monotonic()
    while time.monotonic() < began + seconds:
        await consumer.getmany(timeout_ms=200)
    used, elapsed = cpu_seconds([pid]) - cpu, time.monotonic() - began
    await consumer.stop()
    return 100 * used / elapsed


async def main() -> None:
    broker = EmbeddedBroker(free_port()).start()
    try:
        for wait_ms in (1000, 50):
            delays = sorted(await latency(broker.bootstrap, wait_ms))
            print(f"wait {wait_ms} ms: delivery latency min {delays[0] * 1000:.0f} ms, "
                  f"median {delays[len(delays) // 2] * 1000:.0f}, max {delays[-1] * 1000:.0f}",
                  flush=True)
        for partitions in (1, 40, 170):
            for wait_ms in (50, 500):
                pct = await cost(broker.bootstrap, broker.process.pid, partitions, wait_ms)
                print(f"partitions {partitions}, wait {wait_ms} ms: broker {pct:.2f} % of a core",
                      flush=True)
    finally:
        broker.stop()


if __name__ == "__main__":
    asyncio.run(main())
