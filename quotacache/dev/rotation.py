"""Bounded memory on the embedded broker: the worker re-creates its topics, seeded.

Tansu keeps every record ever produced in memory and applies neither retention nor
compaction; only deleting a topic frees its records. So, once ``rotate_records`` records
were added to the worker's topics since the last rotation (or the broker's RSS passed
``rotate_broker_mb`` and grew by a quarter of it since), the worker starts a new
generation of them, under the same names, without stopping:

1. Hold: every send of the worker waits in memory, in order (``Topics.hold``); reads
   and agents go on (a read's fetch order or refresh request is held, not refused).
2. Pause fetching, wait until every event handed to an agent is done (acked).
3. Table writes stop going to the changelogs (the tables themselves are written as
   before); the producer is flushed: nothing of ours is on its way to the broker.
4. Copy what was not consumed yet (records beyond the last offset handed to an agent:
   e.g. refresh requests other producers published) and the last dead letters.
5. Delete every topic of the worker (topics and changelogs), create them again, empty.
6. Seed: each table's current contents into its changelog (and the persisted offsets
   of its RocksDB store to match); every cache entry into its data topic (for the
   replicas: the worker reads its data topics from after them); then the copied
   records. Changelog writes resume; the consumer starts again at offset 0 of every
   other topic.
7. Release the held sends (in order), resume fetching.

Nothing is lost: tables (cache, spent budget, health, monitored symbols, pins) are in
the seeds; fetches queued or under way live in memory and their sends are held; a record
not yet consumed is copied. A marker file in the data dir spans steps 5-6: a worker that
finds it at start discards its data dir (its persisted offsets may not match) and
recovers from the changelogs; the call journal keeps the spent budget in any case. The
new generation's number is marked on the broker (dev/generations.py): a data dir that
missed the rotation is discarded at its worker's next start.
Only for a sole worker: a standby's offsets would not follow (README, "Bounded memory").
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from quotacache.dev.broker import ensure_topics
from quotacache.dev.broker_probe import group_members, listening_pid, log_ends, read_from, rss_mb
from quotacache.dev.generations import (
    begin_generation,
    broker_generation,
    forget_generations_before,
    record_generation,
    recorded_generation,
)
from quotacache.runtime import Runtime
from quotacache.streams.records import DataRecord

log = logging.getLogger(__name__)

MARKER = "rotation-in-progress"
#: Dead letters kept across a rotation (the newest).
KEEP_DEAD_LETTERS = 1_000
#: Seeds sent between two flushes of the producer (bounds what it buffers).
SEED_BATCH = 5_000
#: How long a rotation waits for events under way before it gives up (and retries).
SETTLE_TIMEOUT = 10.0
#: Looks for requests published during the copy, before the delete (``_top_up``).
TOP_UPS = 3


class Rotation:
    def __init__(self, rt: Runtime, topics: dict[str, int],
                 configs: dict[str, dict[str, str]]):
        self.rt = rt
        self.topics = topics  # name -> partitions: every topic of ours, changelogs too
        self.configs = configs
        self.bootstrap = rt.settings.broker.bootstrap_servers()
        self.baseline = 0  # records on our topics right after the last rotation
        self.generation = recorded_generation(Path(rt.settings.data_dir))
        self.running = False
        self.last: dict[str, Any] = {}
        self._broker_pid: int | None = None
        self.floor_mb: float | None = None  # the broker's memory after the last rotation
        self.waiting_for: int | None = None  # generation whose rotation waits for a standby
        #: Where the copy of each partition began (offsets are contiguous on our topics:
        #: no transactions, no compaction, so start + copied = where a top-up goes on).
        self._carried_from: dict[Any, int] = {}

    # -- when --------------------------------------------------------------------------
    async def records(self) -> int:
        """Records on our topics now (true log ends)."""
        ends = await log_ends(self.bootstrap, list(self.topics))
        return sum(ends.values())

    async def check(self) -> bool:
        """Rotate if the budget is spent and this worker is the sole active one."""
        budget = self.rt.settings.broker.rotate_records
        if not budget or self.running or not self.rt.has_been_ready or not self.sole_owner():
            log.debug("rotation check skipped: ready %s, sole owner %s",
                      self.rt.has_been_ready, self.sole_owner())
            return False
        ends = await log_ends(self.bootstrap, list(self.topics), per_partition=True)
        added = sum(ends.values()) - self.baseline
        lag = self.lag(ends)
        rss = self.broker_rss_mb()
        log.info("rotation check: %d records added in generation %d (budget %d), %d not "
                 "consumed yet, broker %s MB", added, self.generation, budget, lag,
                 "?" if rss is None else round(rss))
        limit = self.rt.settings.broker.rotate_broker_mb
        # What a rotation seeds stays: only growth since then is worth another one.
        grew = rss is not None and rss - (self.floor_mb or 0.0) >= limit / 4
        too_big = bool(limit) and rss is not None and rss >= limit and grew
        if added < budget and not too_big:
            return False
        # A burst still being consumed would be copied whole: let the agents read it
        # first, unless the broker's memory is past its limit by a quarter.
        if lag > budget // 4 and not (limit and rss is not None and rss >= 1.25 * limit):
            return False
        members = await group_members(self.bootstrap, self.rt.settings.app_id)
        if members > 1:
            # A standby's tables mirror the changelogs from its own offsets: re-created
            # under it, they would be behind what it persisted, and it would fail to take
            # over (ConsistencyError). Memory then grows until it is the only worker.
            if self.waiting_for != self.generation:
                log.warning("rotation waits: %d workers in the group; it runs once this "
                            "worker is the only one", members)
                self.waiting_for = self.generation
                self.rt.stats.count_event("rotations_waiting")
            return False
        await self.rotate()
        return True

    def lag(self, ends: dict[Any, int]) -> int:
        """Records of the topics the agents read that were not handed to them yet."""
        consumer = self.rt.app.consumer
        changelogs = self.rt.app.tables.changelog_topics
        total = 0
        for tp in consumer.assignment():
            if tp.topic in self.topics and tp.topic not in changelogs:
                read = consumer._read_offset.get(tp)
                total += max(0, ends.get((tp.topic, tp.partition), 0)
                             - (0 if read is None else read + 1))
        return total

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
        log.info("rotation starts: sends held, fetching paused until the next generation "
                 "is seeded")
        rt.topics.hold()
        consumed = [tp for tp in consumer.assignment() if tp.topic in self.topics
                    and tp.topic not in app.tables.changelog_topics]
        consumer.pause_partitions(consumed)
        try:
            # Faust's pause only narrows its next fetch: one already waiting at the broker
            # may still hand records over. It ends within the longest long-poll.
            await asyncio.sleep(rt.settings.broker.idle_fetch_wait + 0.1)
            if not await self._settled():
                log.warning("rotation postponed: events under way after %.0f s",
                            SETTLE_TIMEOUT)
                return {}
            if not await self._still_alone():
                return {}
            tables = list(app.tables.values())
            for table in tables:  # local writes only, until the seeds are out
                table.send_changelog = _unsent
            await app.producer.flush()
            before = await self.records()
            carried = await self._uncommitted(consumer, consumed)
            data_dir, prefix = Path(rt.settings.data_dir), rt.settings.topic_prefix
            # A number never used before: an attempt that failed after its mark used one.
            target = max(self.generation,
                         await broker_generation(self.bootstrap, prefix)) + 1
            (data_dir / MARKER).write_text(str(target))
            await begin_generation(self.bootstrap, prefix, target)
            await self._recreate(carried)
            for tp in consumed:
                await _restart_at_zero(consumer, tp)
            for table in tables:
                del table.send_changelog  # the class's method again
            seeded = await self._seed_changelogs(tables)
            seeded += await self._seed_data()
            await self._skip_data_seeds(consumer, consumed)
            seeded += await self._send_carried(carried)
            await app.producer.flush()
            record_generation(data_dir, target)
            (data_dir / MARKER).unlink(missing_ok=True)
            self.generation = target
            await forget_generations_before(self.bootstrap, prefix, self.generation)
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
            # A rebalance meanwhile (a worker joined) may have moved some away.
            assigned = consumer.assignment()
            consumer.resume_partitions([tp for tp in consumed if tp in assigned])
            self.running = False
            if self.last:
                self.last["held_sends"] = held

    async def _still_alone(self) -> bool:
        """Still the group's only member, owning every partition? A standby that joined
        while the fetches settled must not have the changelogs re-created under it; no
        table write is held back yet, so postponing here costs nothing."""
        members = await group_members(self.bootstrap, self.rt.settings.app_id)
        if members > 1 or not self.sole_owner():
            log.warning("rotation postponed: %d workers in the group (one joined since the "
                        "check); it runs once this worker is the only one", members)
            self.waiting_for = self.generation
            self.rt.stats.count_event("rotations_waiting")
            return False
        return True

    async def _settled(self) -> bool:
        """Every event handed to an agent is done (its ack given). Faust's unacked set
        can keep a message it marked acked (one below the committed offset after a
        rebalance): done too, as Faust's own ``wait_empty`` counts it."""
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while pending := [m for m in list(self.rt.app.consumer._unacked_messages)
                          if not m.acked]:
            if time.monotonic() > deadline:
                log.warning("rotation: %d events not done: %s", len(pending),
                            sorted({f"{m.topic}[{m.partition}]@{m.offset}"
                                    for m in pending})[:5])
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
        self._carried_from = starts
        return await read_from(self.bootstrap, starts)

    async def _recreate(self, carried: dict[Any, list]) -> None:
        """Delete our topics and create them again, until every one we alone write is
        empty (a deletion Tansu did not carry out is tried again). Right before the
        delete, ``carried`` is topped up with what other producers published since it
        was read (``_top_up``)."""
        from aiokafka.admin import AIOKafkaAdminClient

        left = list(self.topics)
        for _ in range(3):
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
            await admin.start()
            try:
                existing = set(await admin.list_topics())
                if left == list(self.topics):  # the first delete: nothing deleted yet
                    await self._top_up(carried)
                await admin.delete_topics([t for t in left if t in existing])
            finally:
                await admin.close()
            await ensure_topics(self.bootstrap, self.topics, repair=True,
                                configs=self.configs)
            ends = await log_ends(self.bootstrap, list(self.topics))
            # Other producers may publish requests on the new topics already.
            outside = {self.rt.topics.refresh.get_topic_name(),
                       self.rt.topics.volatility.get_topic_name()}
            left = [t for t, n in ends.items() if n and t not in outside]
            if not left:
                return
            log.warning("rotation: %s not emptied, deleting again", ", ".join(left))
        raise RuntimeError(f"rotation could not empty {', '.join(left)}")

    async def _top_up(self, carried: dict[Any, list]) -> None:
        """Records other producers published on the request topics after ``carried`` was
        read: read again until a look finds none, so what a producer publishes during the
        rotation is lost only in the moment between the last look and the delete (one
        admin request), not during the seconds the copy and the admin client took."""
        outside = {self.rt.topics.refresh.get_topic_name(),
                   self.rt.topics.volatility.get_topic_name()}
        for _ in range(TOP_UPS):
            more = await read_from(self.bootstrap, {
                tp: self._carried_from[tp] + len(records) for tp, records in carried.items()
                if tp.topic in outside})
            if not any(more.values()):
                return
            for tp, records in more.items():
                carried[tp] += records

    async def _seed_changelogs(self, tables: Iterable[Any]) -> int:
        """Each table's contents into its (empty) changelog, partition by partition.

        The global tables (memory store; views and timers write them) are seeded with
        no await in between, so no write can come between their seeds. The RocksDB
        tables are written only by agents, inside stream iteration, and the agents are
        idle (fetching paused, every event acked): their seeds are flushed as they go,
        so a large cache does not pile up in the producer's buffer."""
        tables = list(tables)
        sent = 0
        for table in tables:
            if getattr(table.data, "_dbs", None) is None:
                for key, value in list(table.data.data.items()):
                    table.send_changelog(0, key, value)
                    sent += 1
        for table in tables:
            store = table.data
            for partition, db in list(getattr(store, "_dbs", {}).items()):
                count = 0
                for key, value in store._visible_items(db):
                    table.send_changelog(partition, key, value, key_serializer="raw",
                                         value_serializer="raw")
                    count += 1
                    if not count % SEED_BATCH:
                        await self.rt.app.producer.flush()
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
            # Straight to the producer (keyed as Topics.send keys it): no per-record wait.
            await rt.app.producer.send(topic.get_topic_name(), json.dumps(key).encode(),
                                       record.to_json(), None, None, None)
            sent += 1
            if not sent % SEED_BATCH:
                await rt.app.producer.flush()
        return sent

    async def _skip_data_seeds(self, consumer: Any, consumed: list) -> None:
        """The data seeds are for replicas: the cache holds them already, so the worker
        reads its data topics from after them (and the carried records, sent next)."""
        await self.rt.app.producer.flush()
        data = {t.get_topic_name() for t in self.rt.topics.data.values()}
        ends = await log_ends(self.bootstrap, sorted(data), per_partition=True)
        for tp in consumed:
            end = ends.get((tp.topic, tp.partition), 0)
            if tp.topic in data and end:
                await consumer.seek(tp, end)

    async def _send_carried(self, carried: dict[Any, list]) -> int:
        sent = 0
        for tp, records in carried.items():
            for key, value in records:
                await self.rt.app.producer.send(tp.topic, key, value, tp.partition,
                                                None, None)
                sent += 1
                if not sent % SEED_BATCH:
                    await self.rt.app.producer.flush()
        return sent


def _unsent(partition: int | None, key: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
    """A table write during a rotation: kept locally, sent with the seeds."""
    return SimpleNamespace(message=SimpleNamespace(partition=partition or 0))


async def _restart_at_zero(consumer: Any, tp: Any) -> None:
    """Forget what the consumer knew of a partition's old offsets: the topic is new."""
    for name in ("_acked", "_acked_index", "_gap", "_committed_offset"):
        getattr(consumer, name).pop(tp, None)
    await consumer.seek(tp, 0)


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


def discard_if_interrupted(data_dir: Path) -> bool:
    """A rotation was cut short (the worker died in it): its persisted offsets may not
    match the changelogs. True when the caller must discard the data dir."""
    return (data_dir / MARKER).exists()
