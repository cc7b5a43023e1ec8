"""The ``quotacache`` command line: worker, demo, upstream-sim, request, get, batch,
symbols, strategy, stats and watch."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
import textwrap
from collections.abc import Callable
from enum import IntEnum
from typing import Any, NoReturn

import httpx

from quotacache.errors import ConfigError, InvalidSymbol, QuotacacheError, UnknownTarget
from quotacache.settings import Priority, Settings, load_settings


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


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (CliError) instead of usage text."""

    def error(self, message: str) -> NoReturn:
        raise CliError(f"{message} (see {self.prog} --help)", Exit.USAGE, prog=self.prog)


def one_line(text: str) -> str:
    """A message on one line: the keys of a multi-line configuration error joined by ';'."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    if not lines:
        return "error"
    head, rest = lines[0], lines[1:]
    if not rest:
        return head
    return f"{head} {'; '.join(rest)}" if head.endswith(":") else f"{head}; {'; '.join(rest)}"


# -- input checks: each raises CliError(USAGE) naming the bad value ---------------------------

def _symbol(value: str) -> str:
    from quotacache.streams.records import normalize_symbol

    try:
        return normalize_symbol(value)
    except ValueError:
        raise CliError(f"invalid symbol {value!r}: use 1-30 letters, digits, '_' or '-' "
                       "(or '*')", Exit.USAGE) from None


def _symbols(text: str) -> list[str]:
    return [_symbol(part) for part in text.split(",")]


def _name(value: str, what: str) -> str:
    from quotacache.streams.records import NAME_PATTERN

    if not NAME_PATTERN.fullmatch(value):
        raise CliError(f"invalid {what} name {value!r}: use lower-case letters, digits and "
                       "'_'", Exit.USAGE)
    return value


def _endpoints(text: str) -> list[str]:
    """``service/endpoint,...``, each part checked."""
    pairs = []
    for pair in text.split(","):
        service, slash, endpoint = pair.partition("/")
        if not slash or "/" in endpoint:
            raise CliError(f"invalid endpoint {pair!r}: use SERVICE/ENDPOINT, e.g. "
                           "cryptometer/ticker", Exit.USAGE)
        pairs.append(f"{_name(service, 'service')}/{_name(endpoint, 'endpoint')}")
    return pairs


def _target(settings: Settings, service: str, endpoint: str, symbol: str) -> str:
    """The symbol of a refresh request, checked against the configuration as a worker
    would check it (a request goes to a topic: no worker answers it)."""
    config = settings.services.get(service)
    if config is None:
        raise CliError(f"unknown service {service!r} (configured: "
                       f"{', '.join(sorted(settings.services))})", Exit.USAGE)
    spec = config.endpoints.get(endpoint)
    if spec is None:
        raise CliError(f"unknown endpoint {endpoint!r} of service {service!r} (it has: "
                       f"{', '.join(sorted(config.endpoints))})", Exit.USAGE)
    symbol = _symbol(symbol)
    if symbol == "*" and spec.takes_symbol and not spec.fan_out:
        raise CliError(f"endpoint {service}/{endpoint} needs a symbol, e.g. quotacache "
                       f"request {service} {endpoint} BTC", Exit.USAGE)
    return symbol


def _url(value: str) -> str:
    url = httpx.URL(value) if "://" in value else None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        raise argparse.ArgumentTypeError(f"{value!r}: use http://HOST:PORT")
    return value


def _latency(text: str) -> tuple[float, float]:
    low, _, high = text.partition("-")
    try:
        bounds = (float(low), float(high or low))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: use SECONDS or LOW-HIGH, e.g. 0.2-0.5") from None
    if not 0 <= bounds[0] <= bounds[1]:
        raise argparse.ArgumentTypeError(f"{text!r}: need 0 <= LOW <= HIGH")
    return bounds


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"{text!r}: a port is 1-65535")
    return port


def _positive(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if not value > 0 or value == float("inf"):
            raise argparse.ArgumentTypeError(f"{text!r}: need a number above 0")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


# -- the configuration and the broker --------------------------------------------------------

def _settings(args: argparse.Namespace) -> Settings:
    path = args.config or args.root_config or os.environ.get("QUOTACACHE_CONFIG")
    try:
        return load_settings(path)
    except (OSError, UnicodeDecodeError) as exc:  # a directory, no permission, binary
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else (
            "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else str(exc))
        raise CliError(f"cannot read the configuration file {str(path)!r}: {reason}",
                       Exit.CONFIG) from None


def _check_broker(settings: Settings) -> None:
    """Fail fast, in one line, when nothing listens at the broker's address."""
    from quotacache.dev.broker import port_open

    servers = settings.broker.bootstrap_servers()
    for server in servers.split(","):
        host, _, port = server.strip().rpartition(":")
        with contextlib.suppress(ValueError):
            if port_open(host.strip("[]") or "127.0.0.1", int(port), timeout=2.0):
                return
    raise CliError(f"cannot reach the broker at {servers} (broker.url in the configuration)",
                   Exit.UNREACHABLE)


def _broker_errors(settings: Settings, run: Callable[[], Any]) -> Any:
    """``run()``, with the broker's connection errors as one line."""
    from aiokafka.errors import KafkaError

    try:
        return run()
    except KafkaError as exc:
        raise CliError(f"cannot reach the broker at {settings.broker.bootstrap_servers()} "
                       f"({type(exc).__name__})", Exit.UNREACHABLE) from None


# -- the commands ------------------------------------------------------------------------------

def _check_faust_options(faust_args: list[str]) -> None:
    """Parse the worker's Faust options before anything starts, so that a bad one is one
    line (and the embedded broker is not started for nothing); ``--help`` prints Faust's."""
    import click
    from faust.cli.faust import cli as faust_cli

    try:
        with faust_cli.make_context("quotacache", ["worker"]) as parent:
            command = faust_cli.get_command(parent, "worker")
            assert command is not None
            command.make_context("worker", list(faust_args), parent=parent)
    except click.exceptions.Exit as exit_:  # --help
        raise SystemExit(exit_.exit_code) from None
    except click.UsageError as exc:
        raise CliError(f"{one_line(exc.format_message())} (see quotacache worker --help)",
                       Exit.USAGE) from None


def cmd_worker(args: argparse.Namespace, extra: list[str]) -> int:
    _check_faust_options(extra)
    settings = _settings(args)
    if not settings.broker.embedded:  # the embedded one is started by the worker itself
        _check_broker(settings)
    from quotacache import worker

    logging.basicConfig(level=logging.INFO)
    return _broker_errors(settings, lambda: worker.run(settings, extra))


def cmd_upstream_sim(args: argparse.Namespace, extra: list[str]) -> int:
    from quotacache.dev import simulator

    keys = ("API keys required (401 without one; checked against "
            f"{', '.join(simulator.key_variables())} where set)" if args.require_keys
            else "open: any API key or none")
    print(f"upstream simulator on http://{args.host}:{args.port} "
          f"(latency {args.latency[0]:g}-{args.latency[1]:g}s, {keys})", flush=True)
    try:
        simulator.run(args.host, args.port, args.latency, args.seed,
                      require_keys=args.require_keys)
    except OSError as exc:
        raise CliError(f"cannot listen on {args.host}:{args.port}: "
                       f"{exc.strerror or exc}", Exit.FAILED) from None
    return 0


def cmd_demo(args: argparse.Namespace, extra: list[str]) -> int:
    from quotacache.dev import demo

    return demo.run(duration=args.duration, web_port=args.web_port, sim_port=args.sim_port,
                    broker_port=args.broker_port, symbols=_symbols(args.symbols),
                    rate=args.rate)


def _print(data: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(data, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=False)
    for key, value in data.items():
        if key != "endpoints":
            table.add_row(str(key), json.dumps(value, default=str)[:120])
    Console().print(table)


def cmd_request(args: argparse.Namespace, extra: list[str]) -> int:
    from quotacache.client import Client

    settings = _settings(args)
    symbol = _target(settings, args.service, args.endpoint, args.symbol)
    _check_broker(settings)

    async def go() -> None:
        async with Client(settings) as client:
            await client.request_refresh(args.service, args.endpoint, symbol,
                                         priority=args.priority, force=args.force)

    _broker_errors(settings, lambda: asyncio.run(go()))
    print(f"refresh requested: {args.service}/{args.endpoint}/{symbol}")
    return 0


def cmd_get(args: argparse.Namespace, extra: list[str]) -> int:
    from quotacache.client import Client

    service, endpoint = _name(args.service, "service"), _name(args.endpoint, "endpoint")
    symbol = _symbol(args.symbol)
    settings = _settings(args)

    async def go() -> dict[str, Any]:
        async with Client(settings, base_url=args.url) as client:
            return await client.get(service, endpoint, symbol)

    entry = asyncio.run(go())
    _print(entry, args.json)
    return {"HIT": Exit.OK, "STALE": Exit.OK, "MISS": Exit.MISS}.get(
        entry.get("status", ""), Exit.FAILED)


def cmd_stats(args: argparse.Namespace, extra: list[str]) -> int:
    from quotacache.client import Client
    from quotacache.client.console import stats_table

    settings = _settings(args)

    async def go() -> dict[str, Any]:
        async with Client(settings, base_url=args.url) as client:
            return await client.stats()

    stats = asyncio.run(go())
    if args.json:
        _print(stats, True)
    else:
        from rich.console import Console

        Console().print(stats_table(stats))
    return 0


def cmd_watch(args: argparse.Namespace, extra: list[str]) -> int:
    """Redraw the cluster's figures every ``--interval`` s (``--json``: one line each)."""
    from rich.console import Console
    from rich.live import Live

    from quotacache.client import Client
    from quotacache.client.console import watch_view

    settings = _settings(args)

    async def go() -> None:
        async with Client(settings, base_url=args.url) as client:
            shown = 0
            live = None if args.json else Live(console=Console(), auto_refresh=False)
            with live or contextlib.nullcontext():
                while args.count is None or shown < args.count:
                    if shown:
                        await asyncio.sleep(args.interval)
                    snapshot = await client.snapshot()
                    shown += 1
                    if live is None:
                        print(json.dumps(snapshot), flush=True)
                    else:
                        live.update(watch_view(snapshot, client.base_url), refresh=True)

    asyncio.run(go())
    return 0


def _http_command(args: argparse.Namespace, call: Any) -> int:
    from quotacache.client import Client

    settings = _settings(args)

    async def go() -> dict[str, Any]:
        async with Client(settings, base_url=args.url) as client:
            return dict(await call(client))

    _print(asyncio.run(go()), args.json)
    return 0


def cmd_batch(args: argparse.Namespace, extra: list[str]) -> int:
    symbols, endpoints = _symbols(args.symbols), _endpoints(args.endpoints)
    return _http_command(args, lambda c: c.batch_update(
        symbols, endpoints, priority=args.priority, force=args.force))


def cmd_symbols(args: argparse.Namespace, extra: list[str]) -> int:
    if args.action == "list":
        if args.symbols or args.endpoints:
            raise CliError("list takes no SYMBOLS and no --endpoints", Exit.USAGE)
        return _http_command(args, lambda c: c.monitored())
    if not args.symbols:
        raise CliError(f"{args.action} needs SYMBOLS (comma-separated)", Exit.USAGE)
    symbols = _symbols(args.symbols)
    if args.action == "add":
        endpoints = _endpoints(args.endpoints) if args.endpoints else None
        return _http_command(args, lambda c: c.monitor(symbols, endpoints))
    if args.endpoints:
        raise CliError("remove takes no --endpoints", Exit.USAGE)
    return _http_command(args, lambda c: c.unmonitor(symbols))


def cmd_strategy(args: argparse.Namespace, extra: list[str]) -> int:
    from quotacache.policy.strategy import Strategy

    service = _name(args.service, "service")
    if args.strategy.lower() == "release":
        strategy = None
    elif args.strategy.upper() in Strategy.__members__:
        strategy = args.strategy.upper()
    else:
        raise CliError(f"unknown strategy {args.strategy!r}: use "
                       f"{', '.join(Strategy.__members__)} or release", Exit.USAGE)
    return _http_command(args, lambda c: c.set_strategy(service, strategy))


def parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--config", help="TOML config file (default: $QUOTACACHE_CONFIG)")
    root = _Parser(prog="quotacache", description=__doc__, epilog=exit_codes_text(),
                   formatter_class=argparse.RawDescriptionHelpFormatter)
    # Also before the command (quotacache --config F stats): a destination of its own,
    # because a sub-command's default would overwrite the value.
    root.add_argument("--config", dest="root_config", metavar="CONFIG",
                      help="TOML config file (default: $QUOTACACHE_CONFIG)")
    sub = root.add_subparsers(dest="command", required=True)

    def add(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], **kwargs)

    p = add("worker", help="run a worker (Faust's worker command and its options)",
                       add_help=False)
    p.set_defaults(func=cmd_worker, passthrough=True)

    p = add("upstream-sim", help="run the upstream simulator",
            description="A local stand-in for the built-in profiles' upstreams (plausible "
                        "JSON, their limits enforced with 429). Open by default: any API "
                        "key or none is accepted. With --require-keys a call without a key "
                        "gets a 401, and where a profile's variable (CRYPTOMETER_API_KEY, "
                        "KINGFISHER_API_KEY, AIRTABLE_API_KEY, TELEGRAM_BOT_TOKEN) is set "
                        "in the simulator's environment, the key must equal it.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_port, default=28080)
    p.add_argument("--latency", type=_latency, default=(0.2, 0.5),
                   help="seconds, or LOW-HIGH (default 0.2-0.5)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--require-keys", action="store_true",
                   help="refuse calls without the profile's API key (401); check it against "
                        "the profile's variable where that is set (default: open)")
    p.set_defaults(func=cmd_upstream_sim)

    p = add("demo", help="broker + simulator + worker + load, with live stats")
    p.add_argument("--duration", type=_positive(float), default=None,
                   help="stop after this many seconds (default: run until Ctrl-C)")
    p.add_argument("--web-port", type=_port, default=6066)
    p.add_argument("--sim-port", type=_port, default=28080)
    p.add_argument("--broker-port", type=_port, default=19092)
    p.add_argument("--symbols", default="BTC,ETH,SOL,XRP,DOGE,ADA,AVAX,LINK")
    p.add_argument("--rate", type=_positive(float), default=50.0,
                   help="reads + requests per second")
    p.set_defaults(func=cmd_demo)

    for name, func, helptext in (("request", cmd_request, "publish a refresh request"),
                                 ("get", cmd_get, "read one cache entry")):
        p = add(name, help=helptext)
        p.add_argument("service")
        p.add_argument("endpoint")
        p.add_argument("symbol", nargs="?", default="*")
        p.set_defaults(func=func)
        if name == "request":
            p.add_argument("--force", action="store_true")
            p.add_argument("--priority", choices=[x.value for x in Priority])
        else:
            p.add_argument("--url", type=_url, help="worker URL (default from [web])")
            p.add_argument("--json", action="store_true")

    p = add("stats", help="cache statistics of every worker, per endpoint")
    p.set_defaults(func=cmd_stats)
    http_commands = [p]

    p = add("watch", help="live view of the figures (what the dashboard shows)")
    p.add_argument("--interval", type=_positive(float), default=2.0,
                   help="seconds between updates")
    p.add_argument("--count", type=_positive(int), default=None,
                   help="stop after this many updates")
    p.set_defaults(func=cmd_watch)
    http_commands.append(p)

    p = add("batch", help="refresh SYMBOLS x ENDPOINTS (list endpoints cost one call)")
    p.add_argument("symbols", help="comma-separated, e.g. BTC,ETH,SOL")
    p.add_argument("endpoints", help="comma-separated service/endpoint names")
    p.add_argument("--priority", choices=[x.value for x in Priority])
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_batch)
    http_commands.append(p)

    p = add("symbols", help="monitored symbols: list, add, remove")
    p.add_argument("action", choices=["list", "add", "remove"])
    p.add_argument("symbols", nargs="?", help="comma-separated")
    p.add_argument("--endpoints", help="comma-separated service/endpoint names (add)")
    p.set_defaults(func=cmd_symbols)
    http_commands.append(p)

    p = add("strategy", help="pin a service's strategy, or release it")
    p.add_argument("service")
    p.add_argument("strategy", help="AGGRESSIVE, NORMAL, CONSERVATIVE, MINIMAL or release")
    p.set_defaults(func=cmd_strategy)
    http_commands.append(p)

    for p in http_commands:
        p.add_argument("--url", type=_url, help="worker URL (default from [web])")
        p.add_argument("--json", action="store_true")
    return root


def _worker_of(exc: httpx.HTTPError) -> str:
    with contextlib.suppress(RuntimeError):  # an error without its request
        url = exc.request.url
        return f"{url.scheme}://{url.netloc.decode()}"
    return "the worker"


def _report(exc: BaseException) -> tuple[str, Exit]:
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
        return (f"the worker at {_worker_of(exc)} refused: {one_line(str(exc))} "
                f"(HTTP {response.status_code}"
                f"{f', retry after {retry} s' if retry else ''})"), Exit.REFUSED
    if isinstance(exc, httpx.DecodingError):
        return (f"the answer of {_worker_of(exc)} is not what a quotacache worker sends "
                f"({one_line(str(exc))})"), Exit.REFUSED
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer from the worker at {_worker_of(exc)} in time", Exit.UNREACHABLE
    if isinstance(exc, httpx.HTTPError):
        reason = one_line(str(exc)) if str(exc) else type(exc).__name__
        hint = (" (is a worker running there? --url or [web] of the configuration)"
                if isinstance(exc, httpx.ConnectError) else "")
        return (f"cannot reach the worker at {_worker_of(exc)}: {reason}{hint}",
                Exit.UNREACHABLE)
    if isinstance(exc, QuotacacheError):
        lines = str(exc).splitlines() or [type(exc).__name__]
        more = f" (the rest with {DEBUG_ENV}=1)" if len(lines) > 1 else ""
        return lines[0].rstrip(":") + more, Exit.FAILED
    return (f"internal error: {type(exc).__name__}: {one_line(str(exc))} "
            f"({DEBUG_ENV}=1 shows the traceback)"), Exit.FAILED


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = "quotacache"
    try:
        args, extra = parser().parse_known_args(argv)
        prog = f"quotacache {args.command}"
        if extra and not getattr(args, "passthrough", False):
            raise CliError(f"unrecognized arguments: {' '.join(extra)} (see {prog} --help)",
                           Exit.USAGE)
        if args.command not in ("worker", "upstream-sim") and not logging.getLogger().handlers:
            # Libraries' warnings (aiokafka's "Unable connect ...") would add lines to the
            # one line of an error: the command says what went wrong itself.
            logging.getLogger().addHandler(logging.NullHandler())
        return int(args.func(args, extra) or 0)
    except KeyboardInterrupt:
        return Exit.INTERRUPTED
    except BrokenPipeError:  # e.g. `quotacache watch --json | head -1`
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return Exit.OK
    except Exception as exc:
        message, code = _report(exc)
        if isinstance(exc, CliError) and exc.prog:
            prog = exc.prog
        if os.environ.get(DEBUG_ENV) == "1":
            import traceback

            traceback.print_exc()
        print(f"{prog}: {message}", file=sys.stderr, flush=True)
        return code
