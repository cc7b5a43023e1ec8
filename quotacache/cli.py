"""The ``quotacache`` command line: worker, demo, upstream-sim, request, get, batch,
symbols, strategy, stats and watch."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from typing import Any

import httpx

from quotacache.errors import ConfigError, QuotacacheError
from quotacache.settings import Priority, Settings, load_settings


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config)


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


def cmd_worker(args: argparse.Namespace, extra: list[str]) -> int:
    from quotacache import worker

    logging.basicConfig(level=logging.INFO)
    return worker.run(_settings(args), extra)


def cmd_upstream_sim(args: argparse.Namespace, extra: list[str]) -> int:
    from quotacache.dev import simulator

    keys = ("API keys required (401 without one; checked against "
            f"{', '.join(simulator.key_variables())} where set)" if args.require_keys
            else "open: any API key or none")
    print(f"upstream simulator on http://{args.host}:{args.port} "
          f"(latency {args.latency[0]:g}-{args.latency[1]:g}s, {keys})", flush=True)
    simulator.run(args.host, args.port, args.latency, args.seed,
                  require_keys=args.require_keys)
    return 0


def cmd_demo(args: argparse.Namespace, extra: list[str]) -> int:
    from quotacache.dev import demo

    return demo.run(duration=args.duration, web_port=args.web_port, sim_port=args.sim_port,
                    broker_port=args.broker_port, symbols=args.symbols.split(","),
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

    async def go() -> None:
        async with Client(_settings(args)) as client:
            await client.request_refresh(args.service, args.endpoint, args.symbol,
                                         priority=args.priority, force=args.force)

    asyncio.run(go())
    print(f"refresh requested: {args.service}/{args.endpoint}/{args.symbol}")
    return 0


def cmd_get(args: argparse.Namespace, extra: list[str]) -> int:
    from quotacache.client import Client

    async def go() -> dict[str, Any]:
        async with Client(_settings(args), base_url=args.url) as client:
            return await client.get(args.service, args.endpoint, args.symbol)

    entry = asyncio.run(go())
    _print(entry, args.json)
    return {"HIT": 0, "STALE": 0, "MISS": 3}.get(entry.get("status", ""), 1)


def cmd_stats(args: argparse.Namespace, extra: list[str]) -> int:
    from quotacache.client import Client
    from quotacache.client.console import stats_table

    async def go() -> dict[str, Any]:
        async with Client(_settings(args), base_url=args.url) as client:
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

    async def go() -> None:
        async with Client(_settings(args), base_url=args.url) as client:
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

    async def go() -> dict[str, Any]:
        async with Client(_settings(args), base_url=args.url) as client:
            return dict(await call(client))

    _print(asyncio.run(go()), args.json)
    return 0


def cmd_batch(args: argparse.Namespace, extra: list[str]) -> int:
    return _http_command(args, lambda c: c.batch_update(
        args.symbols.split(","), args.endpoints.split(","), priority=args.priority,
        force=args.force))


def cmd_symbols(args: argparse.Namespace, extra: list[str]) -> int:
    symbols = args.symbols.split(",") if args.symbols else []
    if args.action == "list":
        return _http_command(args, lambda c: c.monitored())
    if not symbols:
        raise QuotacacheError(f"symbols {args.action} needs SYMBOLS (comma-separated)")
    if args.action == "add":
        endpoints = args.endpoints.split(",") if args.endpoints else None
        return _http_command(args, lambda c: c.monitor(symbols, endpoints))
    return _http_command(args, lambda c: c.unmonitor(symbols))


def cmd_strategy(args: argparse.Namespace, extra: list[str]) -> int:
    strategy = None if args.strategy.lower() == "release" else args.strategy
    return _http_command(args, lambda c: c.set_strategy(args.service, strategy))


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="TOML config file (default: $QUOTACACHE_CONFIG)")
    root = argparse.ArgumentParser(prog="quotacache", description=__doc__)
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
    p.add_argument("--port", type=int, default=28080)
    p.add_argument("--latency", type=_latency, default=(0.2, 0.5),
                   help="seconds, or LOW-HIGH (default 0.2-0.5)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--require-keys", action="store_true",
                   help="refuse calls without the profile's API key (401); check it against "
                        "the profile's variable where that is set (default: open)")
    p.set_defaults(func=cmd_upstream_sim)

    p = add("demo", help="broker + simulator + worker + load, with live stats")
    p.add_argument("--duration", type=float, default=None,
                   help="stop after this many seconds (default: run until Ctrl-C)")
    p.add_argument("--web-port", type=int, default=6066)
    p.add_argument("--sim-port", type=int, default=28080)
    p.add_argument("--broker-port", type=int, default=19092)
    p.add_argument("--symbols", default="BTC,ETH,SOL,XRP,DOGE,ADA,AVAX,LINK")
    p.add_argument("--rate", type=float, default=50.0, help="reads + requests per second")
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
            p.add_argument("--url", help="worker URL (default from [web])")
            p.add_argument("--json", action="store_true")

    p = add("stats", help="cache statistics of every worker, per endpoint")
    p.set_defaults(func=cmd_stats)
    http_commands = [p]

    p = add("watch", help="live view of the figures (what the dashboard shows)")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between updates")
    p.add_argument("--count", type=int, default=None, help="stop after this many updates")
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
        p.add_argument("--url", help="worker URL (default from [web])")
        p.add_argument("--json", action="store_true")
    return root


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args, extra = parser().parse_known_args(argv)
    if extra and not getattr(args, "passthrough", False):
        parser().error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.func(args, extra) or 0)
    except ConfigError as exc:
        print(f"quotacache: {exc}", file=sys.stderr)
        return 2
    except QuotacacheError as exc:
        print(f"quotacache: {exc}", file=sys.stderr)
        return 1
    except httpx.HTTPStatusError as exc:
        print(f"quotacache: {exc} (HTTP {exc.response.status_code})", file=sys.stderr)
        return 4
    except httpx.HTTPError as exc:
        print(f"quotacache: cannot reach the worker: {type(exc).__name__}", file=sys.stderr)
        return 5
    except KeyboardInterrupt:
        return 130
