"""What the rotation reads of the embedded broker: true log ends, raw records from an
offset on, and the broker process itself (its PID by its port, its resident memory).

Tansu's ListOffsets is wrong (dev/broker.py), so log ends come from ``true_end_offsets``.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from quotacache.dev.broker import true_end_offsets

log = logging.getLogger(__name__)


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


async def group_members(bootstrap: str, group: str) -> int:
    """How many consumers are members of ``group`` now."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    return sum(len(found[5]) for response in described for found in response.groups
               if found[1] == group)


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
