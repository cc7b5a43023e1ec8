import asyncio, time, random, sys, os
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from quotacache.broker import EmbeddedBroker, free_port, ensure_topics

def ticks(pid):
    with open(f"/proc/{pid}/stat") as f: p=f.read().rsplit(")",1)[1].split()
    return int(p[11])+int(p[12])

async def latency(bs, wait_ms, n=10):
    await ensure_topics(bs, ["lat"], 1)
    c = AIOKafkaConsumer(bootstrap_servers=bs, group_id=None, fetch_max_wait_ms=wait_ms)
    await c.start(); tp=TopicPartition("lat",0); c.assign([tp]); await c.seek_to_end(tp)
    p = AIOKafkaProducer(bootstrap_servers=bs, linger_ms=0); await p.start()
    lats=[]
    async def consume():
        while len(lats)<n:
            r = await c.getmany(timeout_ms=5000)
            now=time.time()
            for recs in r.values():
                for m in recs: lats.append(now-float(m.value))
    t=asyncio.create_task(consume())
    for i in range(n):
        await asyncio.sleep(random.uniform(0.3,1.3))
        await p.send_and_wait("lat", str(time.time()).encode())
    await asyncio.wait_for(t, 20)
    await p.stop(); await c.stop()
    return lats

async def cost(bs, pid, parts, wait_ms, secs=10):
    names=[f"cost{parts}-{i}" for i in range(parts)]
    await ensure_topics(bs, names, 1)
    c = AIOKafkaConsumer(bootstrap_servers=bs, group_id=None, fetch_max_wait_ms=wait_ms)
    await c.start(); tps=[TopicPartition(n,0) for n in names]; c.assign(tps); await c.seek_to_end(*tps)
    await c.getmany(timeout_ms=500)
    t0=ticks(pid); s0=time.monotonic()
    end=time.monotonic()+secs
    while time.monotonic()<end: await c.getmany(timeout_ms=200)
    el=time.monotonic()-s0; t1=ticks(pid)
    await c.stop()
    return 100*(t1-t0)/os.sysconf("SC_CLK_TCK")/el

async def main():
    b=EmbeddedBroker(free_port()).start()
    try:
        bs=b.bootstrap
        for w in (1000, 50):
            l=await latency(bs,w)
            print(f"wait {w} ms: delivery latency ms min {min(l)*1000:.0f} median {sorted(l)[len(l)//2]*1000:.0f} max {max(l)*1000:.0f}", flush=True)
        for parts in (1, 40, 170):
            for w in (50, 500):
                print(f"partitions {parts} wait {w}: broker cpu {await cost(bs,b.process.pid,parts,w):.2f}%", flush=True)
    finally:
        b.stop()
if __name__ == "__main__":
    asyncio.run(main())
