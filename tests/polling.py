"""Waiting for a condition with a deadline (never a bare sleep): ``poll`` and ``apoll``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any


class _Until:
    """Iterating yields the pauses between calls of ``predicate`` and ends once it returns
    something truthy (kept in ``value``); after ``timeout`` it fails the test."""

    def __init__(self, predicate: Callable[[], Any], timeout: float, interval: float,
                 message: str):
        self.predicate, self.timeout, self.interval = predicate, timeout, interval
        self.message, self.value = message, None

    def __iter__(self) -> Iterator[float]:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            self.value = self.predicate()
            if self.value:
                return
            yield self.interval
        raise AssertionError(f"{self.message} not reached in {self.timeout}s "
                             f"(last: {self.value!r})")


def poll(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05,
         message: str = "condition") -> Any:
    """Call ``predicate`` until it returns something truthy; fail after ``timeout``."""
    for pause in (until := _Until(predicate, timeout, interval, message)):
        time.sleep(pause)
    return until.value


async def apoll(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05,
                message: str = "condition") -> Any:
    """``poll`` for async tests: sleeps without blocking the event loop."""
    for pause in (until := _Until(predicate, timeout, interval, message)):
        await asyncio.sleep(pause)
    return until.value
