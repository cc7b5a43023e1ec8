"""Bounded memory on the embedded broker: the worker re-creates its topics, seeded.

Tansu keeps every record ever produced in memory and applies neither retention nor
compaction; only deleting a topic frees its records. So, once ``rotate_records`` records
were added to the worker's topics since the last rotation, the worker starts a new
generation of them, under the same names, without stopping:

1. Hold: every send of the worker waits in memory, in order (``Topics.hold``); reads
   and agents go on (a read's refresh request is held, not refused).
2. Pause fetching, wait until every event handed to an agent is done (acked).
3. Table writes stop going to the changelogs (the tables themselves are written as
   before); the producer is flushed: nothing of ours is on its way to the broker.
4. Copy what was not consumed yet (records beyond the last offset handed to an agent:
   e.g. refresh requests other producers published) and the last dead letters.
5. Delete every topic of the worker (topics and changelogs), create them again, empty.
6. Seed: each table's current contents into its changelog (and the persisted offsets
   of its RocksDB store to match); every cache entry into its data topic (replicas
   rebuild from it; materialize skips what it holds); then the copied records.
   Changelog writes resume; the consumer starts again at offset 0 of every topic.
7. Release the held sends (in order), resume fetching.

Nothing is lost: tables (cache, spent budget, health, monitored symbols, pins) are in
the seeds; fetches queued or under way live in memory and their sends are held; a record
not yet consumed is copied. A marker file in the data dir spans steps 5-6: a worker that
finds it at start discards its data dir (its persisted offsets may not match) and
recovers from the changelogs; the call journal keeps the spent budget in any case.
Only for a sole worker: a standby's offsets would not follow (README, "Bounded memory").
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from quotacache.dev.broker import ensure_topics, true_end_offsets
from quotacache.runtime import Runtime
from quotacache.streams.records import DataRecord

log = logging.getLogger(__name__)

MARKER = "rotation-in-progress"
#: Dead letters kept across a rotation (the newest).
KEEP_DEAD_LETTERS = 1_000
#: How long a rotation waits for events under way before it gives up (and retries).
SETTLE_TIMEOUT = 10.0


class Rotation:
    def __init__(self, rt: Runtime, topics: dict[str, int],
                 configs: dict[str, dict[str, str]]):
        self.rt = rt
        self.topics = topics  # name -> partitions: every topic of ours, changelogs too
        self.configs = configs
        self.bootstrap = rt.settings.broker.bootstrap_servers()
        self.baseline = 0  # records on our topics right after the last rotation
        self.generation = 1
        self.running = False
        self.last: dict[str, Any] = {}
        self._broker_pid: int | None = None
        self.floor_mb: float | None = None  # the broker's memory after the last rotation

    # -- when --------------------------------------------------------------------------
    async def records(self) -> int:
        """Records on our topics now (true log ends)."""
        ends = await log_ends(self.bootstrap, list(self.topics))
        return sum(ends.values())

    async def check(self) -> bool:
        """Rotate if the budget is spent and this worker is the sole active one."""
        budget = self.rt.settings.broker.rotate_records
        if not budget or self.running or not self.rt.has_been_ready or not self.sole_owner():
            log.info("rotation check skipped: ready %s, sole owner %s", self.rt.has_been_ready,
                     self.sole_owner())
            return False
        added = await self.records() - self.baseline
        rss = self.broker_rss_mb()
        log.info("rotation check: %d records added in generation %d (budget %d), broker "
                 "%s MB", added, self.generation, budget, "?" if rss is None else round(rss))
        limit = self.rt.settings.broker.rotate_broker_mb
        # What a rotation seeds stays: only growth since then is worth another one.
        grew = rss is not None and rss - (self.floor_mb or 0.0) >= limit / 4
        too_big = bool(limit) and rss is not None and rss >= limit and grew
        if added < budget and not too_big:
            return False
        await self.rotate()
        return True

    def broker_rss_mb(self) -> float | None:
        """The embedded broker's resident memory (None: not found on this machine)."""
        if self._broker_pid is None or not Path(f"/proc/{self._broker_pid}").exists():
            self._broker_pid = listening_pid(self.rt.settings.broker.embedded_port)
        return None if self._broker_pid is None else rss_mb(self._broker_pid)

    def sole_owner(self) -> bool:
        """Does this worker consume every partition of every topic its agents read?"""
        assigned = {(tp.topic, tp.partition) for tp in self.rt.app.consumer.assignment()}
        return all((t.get_topic_name(), p) in assigned for t in self.rt.topics.all()
                   if t is not self.rt.topics.dead_letter  # read by people, not agents
                   for p in range(self.rt.settings.broker.partitions))

    # -- how ---------------------------------------------------------------------------
    async def rotate(self) -> dict[str, Any]:
        rt, app = self.rt, self.rt.app
        consumer = app.consumer
        self.running = True
        began = time.monotonic()
        rt.topics.hold()
        consumed = [tp for tp in consumer.assignment() if tp.topic in self.topics
                    and tp.topic not in app.tables.changelog_topics]
        consumer.pause_partitions(consumed)
        try:
            if not await self._settled():
                log.warning("rotation postponed: events under way after %.0f s",
                            SETTLE_TIMEOUT)
                return {}
            tables = list(app.tables.values())
            for table in tables:  # local writes only, until the seeds are out
                table.send_changelog = _unsent
            await app.producer.flush()
            carried = await self._uncommitted(consumer, consumed)
            marker = Path(rt.settings.data_dir) / MARKER
            marker.write_text(str(self.generation + 1))
            before = await self.records()
            await self._recreate()
            for tp in consumed:
                await _restart_at_zero(consumer, tp)
            for table in tables:
                del table.send_changelog  # the class's method again
            seeded = self._seed_changelogs(tables)  # no await: a consistent snapshot
            seeded += await self._seed_data()
            seeded += await self._send_carried(carried)
            await app.producer.flush()
            marker.unlink(missing_ok=True)
            self.generation += 1
            rt.stats.count_event("rotations")
            self.baseline = await self.records()
            self.floor_mb = self.broker_rss_mb()
            self.last = {"generation": self.generation, "records_before": before,
                         "records_after": self.baseline, "seeded": seeded,
                         "carried": sum(len(v) for v in carried.values()),
                         "seconds": round(time.monotonic() - began, 2)}
            log.warning("rotation to generation %d: %s", self.generation, self.last)
            return self.last
        finally:
            for table in app.tables.values():  # after a failure too
                table.__dict__.pop("send_changelog", None)
            held = await rt.topics.release()
            consumer.resume_partitions(consumed)
            self.running = False
            if self.last:
                self.last["held_sends"] = held

    async def _settled(self) -> bool:
        """Every event handed to an agent is done (its ack given)."""
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while self.rt.app.consumer._unacked_messages:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    async def _uncommitted(self, consumer: Any, consumed: list) -> dict[Any, list]:
        """Records of our consumed partitions beyond what agents were handed, and the
        newest dead letters: (key, value) lists per partition, read raw."""
        starts = {}
        for tp in consumed:
            read = consumer._read_offset.get(tp)
            starts[tp] = 0 if read is None else read + 1
        dead = self.rt.topics.dead_letter.get_topic_name()
        ends = await log_ends(self.bootstrap, [dead], per_partition=True)
        for tp, end in ends.items():
            starts[tp] = max(0, end - KEEP_DEAD_LETTERS)
        return await read_from(self.bootstrap, starts)

    async def _recreate(self) -> None:
        """Delete our topics and create them again, until every one is empty."""
        from aiokafka.admin import AIOKafkaAdminClient

        left = list(self.topics)
        for _ in range(3):
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
            await admin.start()
            try:
                existing = set(await admin.list_topics())
                await admin.delete_topics([t for t in left if t in existing])
            finally:
                await admin.close()
            await ensure_topics(self.bootstrap, self.topics, repair=True,
                                configs=self.configs)
            ends = await log_ends(self.bootstrap, list(self.topics))
            left = [t for t, n in ends.items() if n]
            if not left:
                return
            log.warning("rotation: %s not emptied, deleting again", ", ".join(left))
        raise RuntimeError(f"rotation could not empty {', '.join(left)}")

    def _seed_changelogs(self, tables: Iterable[Any]) -> int:
        """Each table's contents into its (empty) changelog, partition by partition."""
        sent = 0
        for table in tables:
            store = table.data
            dbs = getattr(store, "_dbs", None)
            if dbs is None:  # memory store (the global control tables): one partition
                for key, value in list(store.data.items()):
                    table.send_changelog(0, key, value)
                    sent += 1
                continue
            for partition, db in dbs.items():
                count = 0
                for key, value in store._visible_items(db):  # no await: nothing changes
                    table.send_changelog(partition, key, value, key_serializer="raw",
                                         value_serializer="raw")
                    count += 1
                if count:
                    db.put(store.offset_key, str(count - 1).encode())
                else:
                    db.delete(store.offset_key)
                sent += count
        return sent

    async def _seed_data(self) -> int:
        """Every cache entry into its data topic: a replica that starts now sees it all."""
        rt, sent = self.rt, 0
        for key, entry in rt.cache.items():
            service, endpoint, symbol = key.split("/", 2)
            topic = rt.topics.data.get((service, endpoint))
            if topic is None:
                continue
            record = DataRecord(service=service, endpoint=endpoint, symbol=symbol,
                                data=entry.data, fetched_at=entry.fetched_at, ttl=entry.ttl)
            await rt.topics.send_raw(topic, key, record.to_json())
            sent += 1
        return sent

    async def _send_carried(self, carried: dict[Any, list]) -> int:
        sent = 0
        for tp, records in carried.items():
            for key, value in records:
                await self.rt.app.producer.send(tp.topic, key, value, tp.partition,
                                                None, None)
                sent += 1
        return sent


def _unsent(partition: int | None, key: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
    """A table write during a rotation: kept locally, sent with the seeds."""
    return SimpleNamespace(message=SimpleNamespace(partition=partition or 0))


async def _restart_at_zero(consumer: Any, tp: Any) -> None:
    """Forget what the consumer knew of a partition's old offsets: the topic is new."""
    for name in ("_acked", "_acked_index", "_gap", "_committed_offset"):
        getattr(consumer, name).pop(tp, None)
    await consumer.seek(tp, 0)


async def log_ends(bootstrap: str, topics: list[str], *,
                   per_partition: bool = False) -> dict[Any, int]:
    """True log ends of ``topics`` (summed per topic, or per partition)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                group_id=None)
    await consumer.start()
    try:
        known = await consumer.topics()
        partitions = [TopicPartition(t, p) for t in topics if t in known
                      for p in (consumer.partitions_for_topic(t) or ())]
        reported = await consumer.end_offsets(partitions) if partitions else {}
    finally:
        await consumer.stop()
    ends = await true_end_offsets(bootstrap, reported)
    if per_partition:
        return {tp: int(end) for tp, end in ends.items()}
    out: dict[Any, int] = {}
    for tp, end in ends.items():
        out[tp.topic] = out.get(tp.topic, 0) + int(end)
    return out


async def read_from(bootstrap: str, starts: dict[Any, int],
                    timeout: float = 10.0) -> dict[Any, list]:
    """Raw (key, value) of each partition from its start offset to its log end."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    wanted = {TopicPartition(tp.topic, tp.partition): start for tp, start in starts.items()}
    ends = await log_ends(bootstrap, sorted({tp.topic for tp in wanted}), per_partition=True)
    todo = {tp: start for tp, start in wanted.items() if ends.get(tp, 0) > start}
    out: dict[Any, list] = {tp: [] for tp in wanted}
    if not todo:
        return out
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                group_id=None)
    await consumer.start()
    try:
        consumer.assign(list(todo))
        for tp, start in todo.items():
            consumer.seek(tp, start)
        deadline = time.monotonic() + timeout
        while todo and time.monotonic() < deadline:
            batches = await consumer.getmany(*todo, timeout_ms=200)
            for tp, records in batches.items():
                for record in records:
                    if record.offset < ends[tp]:
                        out[tp].append((record.key, record.value))
                if await consumer.position(tp) >= ends[tp]:
                    todo.pop(tp, None)
        if todo:
            log.warning("rotation: could not read %s to its end", sorted(map(str, todo)))
    finally:
        await consumer.stop()
    return out


def install(rt: Runtime, topics: dict[str, int], configs: dict[str, dict[str, str]]) -> Rotation:
    """Count the records every ``rotate_check`` and rotate when the budget is spent."""
    rotation = Rotation(rt, topics, configs)

    @rt.app.timer(rt.settings.broker.rotate_check, name="rotate-topics")
    async def rotate_topics() -> None:
        try:
            await rotation.check()
        except Exception:  # a failed rotation is retried at the next check
            log.exception("rotation failed")

    return rotation


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def listening_pid(port: int) -> int | None:
    """The process listening on TCP ``port`` here (Linux /proc; None elsewhere)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    for proc in Path("/proc").iterdir() if inodes else ():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):
                return int(proc.name)
        except OSError:
            continue
    return None


def discard_if_interrupted(data_dir: Path) -> bool:
    """A rotation was cut short (the worker died in it): its persisted offsets may not
    match the changelogs. True when the caller must discard the data dir."""
    return (data_dir / MARKER).exists()
