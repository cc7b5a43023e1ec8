"""How long a bare aiokafka consumer takes to join a group on the embedded broker.

    python -m bench.idle.join_probe     # prints seconds from start() to an assignment

Tansu 0.6.0 holds a JoinGroup in 1 s steps until half the session timeout has passed
(its group coordinator's ``join_group_pause``), whatever the rebalance timeout: 3 s with
Kafka's usual 6 s session, 1 s with 2 s. So the session timeout sets how soon a worker on
it is ready after launch.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer

from quotacache.dev.broker import EmbeddedBroker, ensure_topics, free_port


async def main() -> None:
    broker = EmbeddedBroker(free_port()).start()
    try:
        await ensure_topics(broker.bootstrap, {"j": 1})
        for rebalance_ms, session_ms in ((1000, 6000), (6000, 6000), (3000, 4000),
                                         (3000, 2000), (3000, 1500)):
            consumer = AIOKafkaConsumer("j", bootstrap_servers=broker.bootstrap,
                                        group_id=f"g{rebalance_ms}-{session_ms}",
                                        rebalance_timeout_ms=rebalance_ms,
                                        session_timeout_ms=session_ms,
                                        heartbeat_interval_ms=500)
            began = time.monotonic()
            await consumer.start()
            while not consumer.assignment():
                await asyncio.sleep(0.01)
            print(f"rebalance timeout {rebalance_ms} ms, session timeout {session_ms} ms: "
                  f"assigned after "
                  f"{time.monotonic() - began:.2f} s", flush=True)
            await consumer.stop()
    finally:
        broker.stop()


if __name__ == "__main__":
    asyncio.run(main())
