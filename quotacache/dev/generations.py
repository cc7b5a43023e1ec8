"""Which generation of the topics a data dir was written against.

A rotation (``dev/rotation.py``) re-creates the changelogs under the same names. A data
dir that missed it (a standby stopped at the time, a copy restored from a backup) keeps
the old generation's offsets. The offsets check (``dev/persisted_offsets.py``) finds
those at or past the new ends; those below them it cannot tell from current ones, and
Faust would resume there, skipping the seeds before. So each rotation leaves its number
on the broker, as an empty topic ``<prefix>generation-<n>``, and a worker records beside
its data dir the generation it reads: a data dir of another generation is discarded at
start. No such topic (real Kafka, or no rotation yet) is generation 1.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from pathlib import Path

from quotacache.dev.broker import ensure_topics

log = logging.getLogger(__name__)

#: Beside the data dir's stores: the generation of the topics it was written against.
GENERATION_FILE = "topics-generation"


def generation_topic(prefix: str, generation: int) -> str:
    return f"{prefix}generation-{generation}"


def marks(prefix: str, topics: Iterable[str]) -> dict[str, int]:
    """The generation marks among ``topics``: topic -> its generation."""
    pattern = re.compile(re.escape(prefix) + r"generation-(\d+)")
    return {t: int(m.group(1)) for t in topics if (m := pattern.fullmatch(t))}


def generation_of(prefix: str, topics: Iterable[str]) -> int:
    """The newest generation among the broker's ``topics`` (1 when none is marked)."""
    return max(marks(prefix, topics).values(), default=1)


async def _topics(bootstrap: str) -> list[str]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return list(await admin.list_topics())
    finally:
        await admin.close()


async def broker_generation(bootstrap: str, prefix: str) -> int:
    return generation_of(prefix, await _topics(bootstrap))


def recorded_generation(data_dir: Path) -> int:
    """The generation ``data_dir`` was written against: 1 when it says none (written
    before any rotation, or by a version that did not record it)."""
    path = data_dir / GENERATION_FILE
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return 1


def record_generation(data_dir: Path, generation: int) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / GENERATION_FILE).write_text(str(generation))


async def begin_generation(bootstrap: str, prefix: str, generation: int) -> None:
    """Mark ``generation`` on the broker: before the topics are deleted, so a data dir
    that missed the rotation is told apart even if the rotation is cut short. Raises
    when the broker does not show the mark (nothing may be deleted then)."""
    await ensure_topics(bootstrap, {generation_topic(prefix, generation): 1})
    if (found := await broker_generation(bootstrap, prefix)) < generation:
        raise RuntimeError(f"generation {generation} not marked on the broker "
                           f"(it shows {found})")


async def forget_generations_before(bootstrap: str, prefix: str, generation: int) -> None:
    """Delete the marks of older generations: best effort, as the newest one counts and
    a mark left behind costs one empty partition."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        await admin.start()
        old = [t for t, n in marks(prefix, await admin.list_topics()).items() if n < generation]
        if old:
            await admin.delete_topics(old)
    except Exception as exc:
        log.warning("marks of generations before %d not deleted: %s", generation, exc)
    finally:
        await admin.close()
