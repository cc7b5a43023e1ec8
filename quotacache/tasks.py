"""Background tasks of one worker, tracked so that stopping the worker cancels them all.

A task started with ``asyncio.ensure_future`` and forgotten can outlive the app (an
upstream call finishing after the producer stopped) or vanish with its exception
unseen; every task here is kept until it ends, and its exception is logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


class BackgroundTasks:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def later(self, delay: float, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` after ``delay`` seconds, as a tracked task."""
        async def delayed() -> Any:
            try:
                await asyncio.sleep(delay)
            except asyncio.CancelledError:
                coro.close()  # never started: close it, or Python warns it was not awaited
                raise
            return await coro

        return self.spawn(delayed())

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    async def cancel_all(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __len__(self) -> int:
        return len(self._tasks)
