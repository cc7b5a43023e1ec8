"""How long a bare aiokafka consumer takes to join a group on the embedded broker.

    python -m bench.idle.join_probe     # prints seconds from start() to an assignment

Tansu 0.6.0 answers the first JoinGroup of a group after a fixed ~3 s whatever the
rebalance timeout (1 s here), so no worker is ready sooner than that after launch.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer

from quotacache.dev.broker import EmbeddedBroker, ensure_topics, free_port


async def main() -> None:
    broker = EmbeddedBroker(free_port()).start()
    try:
        await ensure_topics(broker.bootstrap, ["j"], 1)
        for rebalance_ms in (1000, 3000, 6000):
            consumer = AIOKafkaConsumer("j", bootstrap_servers=broker.bootstrap,
                                        group_id=f"g{rebalance_ms}",
                                        rebalance_timeout_ms=rebalance_ms,
                                        session_timeout_ms=6000, heartbeat_interval_ms=1000)
            began = time.monotonic()
            await consumer.start()
            while not consumer.assignment():
                await asyncio.sleep(0.01)
            print(f"rebalance timeout {rebalance_ms} ms: assigned after "
                  f"{time.monotonic() - began:.2f} s", flush=True)
            await consumer.stop()
    finally:
        broker.stop()


if __name__ == "__main__":
    asyncio.run(main())
