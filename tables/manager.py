"""Faust's table manager without its fixed one-second pause at start.

Faust's ``TableManager.on_start`` sleeps 1 s before it registers the changelog topics,
to give autodiscovered modules time to define their tables. quotacache defines every
table in ``build_app``, before the worker starts, so the pause only delays readiness.
"""

from __future__ import annotations

from faust.tables.manager import TableManager


class PromptTableManager(TableManager):
    async def on_start(self) -> None:
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()
