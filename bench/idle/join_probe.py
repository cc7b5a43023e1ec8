import asyncio, time, logging
from aiokafka import AIOKafkaConsumer
from quotacache.broker import EmbeddedBroker, free_port, ensure_topics
async def main():
    from pathlib import Path; b = EmbeddedBroker(free_port(), log_path=Path("tansu-join.log")  # run with RUST_LOG=tansu_broker::coordinator=debug).start()
    try:
        await ensure_topics(b.bootstrap, ["j"], 1)
        for rt in (1000,):
            c = AIOKafkaConsumer("j", bootstrap_servers=b.bootstrap, group_id=f"g{rt}", rebalance_timeout_ms=rt, session_timeout_ms=6000, heartbeat_interval_ms=1000)
            t = time.monotonic(); await c.start()
            while not c.assignment(): await asyncio.sleep(0.01)
            print(rt, "assigned after", round(time.monotonic() - t, 2), flush=True)
            await c.stop()
    finally: b.stop()
if __name__ == "__main__":
    asyncio.run(main())
