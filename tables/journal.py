"""A durable journal of the upstream calls this worker sent, read back at start.

The limiter's counts live in a windowed table whose changelog is on the broker. The
embedded broker is memory-only: when it restarts, or when the whole stack does, the
changelog is gone and a worker would start with empty counts while the upstream still
remembers every call of its window. So every call is also appended here, before it is
sent, to a file outside the data dir (which is wiped when the broker is new).

At start a worker reads the journals of every worker of its app in the same directory
(one file per worker, so no two processes write one file) and keeps, per scope, the send
times they recorded within the longest window. The limiter counts the union of the
table's decision times and the journal's: both hold the same calls (to the millisecond), so
the union is the truth whichever of them survived. A call reaches the journal with one
``write`` before it is sent, so it survives SIGKILL of the worker (the OS holds the
bytes); with ``fsync`` set it also survives a power loss, at one disk flush per call.
"""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

#: A journal file is rewritten with only its recent lines once it passes this size.
COMPACT_BYTES = 1 << 20


class CallJournal:
    def __init__(self, directory: Path, worker: str, horizon: float, *, fsync: bool = False):
        """``horizon``: how far back a call can still count (the longest window + skew)."""
        self.directory = directory
        self.path = directory / f"calls-{worker}.jsonl"
        self.horizon = horizon
        self.fsync = fsync
        self._fd: int | None = None
        self._recorded: defaultdict[str, list[float]] = defaultdict(list)

    def load(self, now: float) -> None:
        """Read every worker's journal of this app: the calls of the last ``horizon``."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._recorded.clear()
        calls = 0
        for path in sorted(self.directory.glob("calls-*.jsonl")):
            for at, scopes in _calls(path):
                if at > now - self.horizon:
                    calls += 1
                    for scope in scopes:
                        self._recorded[scope].append(at)
        if calls:
            log.warning("call journal: %d calls of the last %.0f s count against the limits",
                        calls, self.horizon)
        self.close()  # a reload (takeover) reopens this worker's own file
        self._compact(now)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    @property
    def is_open(self) -> bool:
        return self._fd is not None

    def times(self, scope: str) -> list[float]:
        """Send times (to the ms) the journals recorded in ``scope`` before this start."""
        return self._recorded.get(scope, [])

    def append(self, at: float, scopes: Iterable[str]) -> None:
        """Record one call (before it is sent)."""
        if self._fd is None:
            return
        line = json.dumps({"at": at, "scopes": list(scopes)}) + "\n"
        os.write(self._fd, line.encode())
        if self.fsync:
            os.fsync(self._fd)
        if os.fstat(self._fd).st_size > COMPACT_BYTES:
            os.close(self._fd)
            self._compact(at)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def _compact(self, now: float) -> None:
        """Rewrite this worker's file with only the calls that can still count."""
        if not self.path.exists():
            return
        keep = [json.dumps({"at": at, "scopes": scopes}) + "\n"
                for at, scopes in _calls(self.path) if at > now - self.horizon]
        fresh = self.path.with_suffix(".tmp")
        fresh.write_text("".join(keep))
        os.replace(fresh, self.path)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _calls(path: Path) -> Iterable[tuple[float, list[str]]]:
    """(at, scopes) of each whole line; a torn last line (a crash mid-write) is skipped."""
    try:
        text = path.read_text()
    except OSError:
        return
    for line in text.splitlines():
        try:
            call = json.loads(line)
            yield float(call["at"]), [str(s) for s in call["scopes"]]
        except (ValueError, KeyError, TypeError):
            continue
