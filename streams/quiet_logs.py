"""Keeps the Kafka client's repeated complaints from flooding the log.

While the broker is unreachable, aiokafka logs each failed connection, metadata update,
fetch and produce as it retries: about 85 warnings and errors a second from one worker.
The first of each kind (its logger and message template) goes through; repeats within
``every`` seconds are counted, and the next one let through says how many it stands for.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

#: Loggers whose repeats are collapsed (the Kafka client's retry loops).
NOISY = ("aiokafka",)
#: Distinct kinds remembered; past it the memory starts over (a template is fixed
#: text in library code, but a library may format its own message).
MAX_KINDS = 1000


class Repeats(logging.Filter):
    def __init__(self, every: float = 10.0, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.every = every
        self.clock = clock
        #: (logger, template) -> (when it last went through, repeats held back since)
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(NOISY):
            return True
        kind = (record.name, str(record.msg))
        now = self.clock()
        last, held = self._seen.get(kind, (None, 0))
        if last is not None and now - last < self.every:
            self._seen[kind] = (last, held + 1)
            return False
        if held:
            record.msg = f"{record.getMessage()} ({held} more like it in the last " \
                         f"{now - last:.0f} s)"
            record.args = ()
        if len(self._seen) >= MAX_KINDS and kind not in self._seen:
            self._seen.clear()
        self._seen[kind] = (now, 0)
        return True


def install(handlers: list[logging.Handler], every: float = 10.0) -> None:
    """Filter ``handlers`` (the root logger's, once Faust has set them up), each with its
    own counts: one filter shared by two handlers would hold back, at the second, the
    record it just let through at the first."""
    for handler in handlers:
        if not any(isinstance(f, Repeats) for f in handler.filters):
            handler.addFilter(Repeats(every))
