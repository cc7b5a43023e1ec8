"""What the command line says when a command fails: one line on stderr and an exit code,
the same for every command (``Exit``; ``quotacache --help`` and the README list them)."""

from __future__ import annotations

import contextlib
import textwrap
from enum import IntEnum

import httpx

from quotacache.errors import ConfigError, InvalidSymbol, QuotacacheError, UnknownTarget


class Exit(IntEnum):
    """The exit codes of every command, defined here once (``EXIT_MEANINGS`` says what each
    means; ``quotacache --help`` and the README's "Command line" show the same text)."""

    OK = 0
    FAILED = 1
    USAGE = 2
    MISS = 3
    REFUSED = 4
    UNREACHABLE = 5
    CONFIG = 6
    INTERRUPTED = 130


EXIT_MEANINGS = {
    Exit.OK: "done (get: the entry is a HIT or STALE)",
    Exit.FAILED: "failed otherwise, e.g. a port to listen on is taken or the embedded "
                 "broker did not start",
    Exit.USAGE: "bad arguments or input: an unknown option, a malformed symbol, name or URL, "
                "a service or endpoint the configuration lacks (request, which no worker "
                "answers)",
    Exit.MISS: "get: MISS, no entry yet (a refresh was requested)",
    Exit.REFUSED: "the worker answered with an error (4xx or 5xx: an unknown service or "
                  "endpoint, a missing token, 429, 503, ...)",
    Exit.UNREACHABLE: "cannot reach the worker (or the broker: request, worker)",
    Exit.CONFIG: "bad configuration: the file is missing, unreadable or not TOML, or a key "
                 "has a bad value",
    Exit.INTERRUPTED: "interrupted (Ctrl-C)",
}

#: Set to 1 to get the traceback of an error besides its one line.
DEBUG_ENV = "QUOTACACHE_DEBUG"


def exit_codes_text(width: int = 79) -> str:
    """The exit codes as ``quotacache --help`` prints them."""
    lines = textwrap.wrap("exit codes (every error is one line on stderr, 'quotacache "
                          f"COMMAND: what is wrong'; {DEBUG_ENV}=1 adds the traceback):",
                          width)
    for code, meaning in EXIT_MEANINGS.items():
        lines += textwrap.wrap(meaning, width, initial_indent=f"  {code:<4d}",
                               subsequent_indent=" " * 6)
    return "\n".join(lines)


class CliError(Exception):
    """An error the command line reports as one line, with its exit code."""

    def __init__(self, message: str, code: Exit, prog: str | None = None):
        super().__init__(message)
        self.code = code
        self.prog = prog


def one_line(text: str) -> str:
    """A message on one line: the keys of a multi-line configuration error joined by ';'."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    if not lines:
        return "error"
    head, rest = lines[0], lines[1:]
    if not rest:
        return head
    return f"{head} {'; '.join(rest)}" if head.endswith(":") else f"{head}; {'; '.join(rest)}"


def worker_of(exc: httpx.HTTPError) -> str:
    with contextlib.suppress(RuntimeError):  # an error without its request
        url = exc.request.url
        return f"{url.scheme}://{url.netloc.decode()}"
    return "the worker"


def describe_error(exc: BaseException) -> tuple[str, Exit]:
    """The one line and the exit code of an error that ended a command."""
    if isinstance(exc, CliError):
        return str(exc), exc.code
    if isinstance(exc, ConfigError):
        return one_line(str(exc)), Exit.CONFIG
    if isinstance(exc, UnknownTarget | InvalidSymbol):
        return one_line(str(exc)), Exit.USAGE
    if isinstance(exc, httpx.HTTPStatusError):
        response = exc.response
        retry = response.headers.get("Retry-After")
        return (f"the worker at {worker_of(exc)} refused: {one_line(str(exc))} "
                f"(HTTP {response.status_code}"
                f"{f', retry after {retry} s' if retry else ''})"), Exit.REFUSED
    if isinstance(exc, httpx.DecodingError):
        return (f"the answer of {worker_of(exc)} is not what a quotacache worker sends "
                f"({one_line(str(exc))})"), Exit.REFUSED
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer from the worker at {worker_of(exc)} in time", Exit.UNREACHABLE
    if isinstance(exc, httpx.HTTPError):
        reason = one_line(str(exc)) if str(exc) else type(exc).__name__
        hint = (" (is a worker running there? --url or [web] of the configuration)"
                if isinstance(exc, httpx.ConnectError) else "")
        return (f"cannot reach the worker at {worker_of(exc)}: {reason}{hint}",
                Exit.UNREACHABLE)
    if isinstance(exc, QuotacacheError):
        lines = str(exc).splitlines() or [type(exc).__name__]
        more = f" (the rest with {DEBUG_ENV}=1)" if len(lines) > 1 else ""
        return lines[0].rstrip(":") + more, Exit.FAILED
    return (f"internal error: {type(exc).__name__}: {one_line(str(exc))} "
            f"({DEBUG_ENV}=1 shows the traceback)"), Exit.FAILED
