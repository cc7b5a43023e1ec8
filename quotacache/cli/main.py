"""The ``quotacache`` command line: worker, demo, upstream-sim, request, get, batch,
symbols, strategy, stats and watch."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from typing import Any, NoReturn

from quotacache.cli import commands
from quotacache.cli.errors import DEBUG_ENV, CliError, Exit, describe_error, exit_codes_text
from quotacache.cli.inputs import latency_range, port_number, positive, worker_url
from quotacache.settings import Priority


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (CliError) instead of usage text."""

    def error(self, message: str) -> NoReturn:
        raise CliError(f"{message} (see {self.prog} --help)", Exit.USAGE, prog=self.prog)


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
    p.set_defaults(func=commands.cmd_worker, passthrough=True)

    p = add("upstream-sim", help="run the upstream simulator",
            description="A local stand-in for the built-in profiles' upstreams (plausible "
                        "JSON, their limits enforced with 429). Open by default: any API "
                        "key or none is accepted. With --require-keys a call without a key "
                        "gets a 401, and where a profile's variable (CRYPTOMETER_API_KEY, "
                        "KINGFISHER_API_KEY, AIRTABLE_API_KEY, TELEGRAM_BOT_TOKEN) is set "
                        "in the simulator's environment, the key must equal it.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=port_number, default=28080)
    p.add_argument("--latency", type=latency_range, default=(0.2, 0.5),
                   help="seconds, or LOW-HIGH (default 0.2-0.5)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--require-keys", action="store_true",
                   help="refuse calls without the profile's API key (401); check it against "
                        "the profile's variable where that is set (default: open)")
    p.set_defaults(func=commands.cmd_upstream_sim)

    p = add("demo", help="broker + simulator + worker + load, with live stats")
    p.add_argument("--duration", type=positive(float), default=None,
                   help="stop after this many seconds (default: run until Ctrl-C)")
    p.add_argument("--web-port", type=port_number, default=6066)
    p.add_argument("--sim-port", type=port_number, default=28080)
    p.add_argument("--broker-port", type=port_number, default=19092)
    p.add_argument("--symbols", default="BTC,ETH,SOL,XRP,DOGE,ADA,AVAX,LINK")
    p.add_argument("--rate", type=positive(float), default=50.0,
                   help="reads + requests per second")
    p.set_defaults(func=commands.cmd_demo)

    for name, func, helptext in (("request", commands.cmd_request, "publish a refresh request"),
                                 ("get", commands.cmd_get, "read one cache entry")):
        p = add(name, help=helptext)
        p.add_argument("service")
        p.add_argument("endpoint")
        p.add_argument("symbol", nargs="?", default="*")
        p.set_defaults(func=func)
        if name == "request":
            p.add_argument("--force", action="store_true")
            p.add_argument("--priority", choices=[x.value for x in Priority])
        else:
            p.add_argument("--url", type=worker_url, help="worker URL (default from [web])")
            p.add_argument("--json", action="store_true")

    p = add("stats", help="cache statistics of every worker, per endpoint")
    p.set_defaults(func=commands.cmd_stats)
    http_commands = [p]

    p = add("watch", help="live view of the figures (what the dashboard shows)")
    p.add_argument("--interval", type=positive(float), default=2.0,
                   help="seconds between updates")
    p.add_argument("--count", type=positive(int), default=None,
                   help="stop after this many updates")
    p.set_defaults(func=commands.cmd_watch)
    http_commands.append(p)

    p = add("batch", help="refresh SYMBOLS x ENDPOINTS (list endpoints cost one call)")
    p.add_argument("symbols", help="comma-separated, e.g. BTC,ETH,SOL")
    p.add_argument("endpoints", help="comma-separated service/endpoint names")
    p.add_argument("--priority", choices=[x.value for x in Priority])
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=commands.cmd_batch)
    http_commands.append(p)

    p = add("symbols", help="monitored symbols: list, add, remove")
    p.add_argument("action", choices=["list", "add", "remove"])
    p.add_argument("symbols", nargs="?", help="comma-separated")
    p.add_argument("--endpoints", help="comma-separated service/endpoint names (add)")
    p.set_defaults(func=commands.cmd_symbols)
    http_commands.append(p)

    p = add("strategy", help="pin a service's strategy, or release it")
    p.add_argument("service")
    p.add_argument("strategy", help="AGGRESSIVE, NORMAL, CONSERVATIVE, MINIMAL or release")
    p.set_defaults(func=commands.cmd_strategy)
    http_commands.append(p)

    for p in http_commands:
        p.add_argument("--url", type=worker_url, help="worker URL (default from [web])")
        p.add_argument("--json", action="store_true")
    return root


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
        message, code = describe_error(exc)
        if isinstance(exc, CliError) and exc.prog:
            prog = exc.prog
        if os.environ.get(DEBUG_ENV) == "1":
            import traceback

            traceback.print_exc()
        print(f"{prog}: {message}", file=sys.stderr, flush=True)
        return code
