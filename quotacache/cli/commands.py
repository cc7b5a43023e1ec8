"""The commands themselves: each takes the parsed arguments (and the worker's Faust
options) and returns its exit code."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

import httpx

from quotacache.cli.errors import CliError, Exit, one_line
from quotacache.cli.inputs import (
    broker_errors,
    check_broker,
    check_name,
    load_config,
    parse_endpoints,
    parse_symbol,
    parse_symbols,
    request_symbol,
)


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
    settings = load_config(args)
    if not settings.broker.embedded:  # the embedded one is started by the worker itself
        check_broker(settings)
    from quotacache import worker

    logging.basicConfig(level=logging.INFO)
    return broker_errors(settings, lambda: worker.run(settings, extra))


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
                    broker_port=args.broker_port, symbols=parse_symbols(args.symbols),
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


def _shown(show: Callable[[], object], path: str, url: str) -> None:
    """Run ``show``, which draws a worker's answer on the terminal. An answer of another
    shape (or with markup in its names) is the server's doing: httpx.DecodingError, said
    in one line with exit 4 (``errors.describe_error``), not an internal error."""
    from rich.errors import ConsoleError

    try:
        show()
    except (AttributeError, KeyError, TypeError, ValueError, ConsoleError) as exc:
        raise httpx.DecodingError(f"{type(exc).__name__}: {exc}",
                                  request=httpx.Request("GET", url + path)) from None


def cmd_request(args: argparse.Namespace, extra: list[str]) -> int:
    from quotacache.client import Client

    settings = load_config(args)
    symbol = request_symbol(settings, args.service, args.endpoint, args.symbol)
    check_broker(settings)

    async def go() -> None:
        async with Client(settings) as client:
            await client.request_refresh(args.service, args.endpoint, symbol,
                                         priority=args.priority, force=args.force)

    broker_errors(settings, lambda: asyncio.run(go()))
    print(f"refresh requested: {args.service}/{args.endpoint}/{symbol}")
    return 0


def cmd_get(args: argparse.Namespace, extra: list[str]) -> int:
    from quotacache.client import Client

    service, endpoint = check_name(args.service, "service"), check_name(args.endpoint, "endpoint")
    symbol = parse_symbol(args.symbol)
    settings = load_config(args)

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

    settings = load_config(args)

    async def go() -> tuple[dict[str, Any], str]:
        async with Client(settings, base_url=args.url) as client:
            return await client.stats(), client.base_url

    stats, url = asyncio.run(go())
    if args.json:
        _print(stats, True)
    else:
        from rich.console import Console

        _shown(lambda: Console().print(stats_table(stats)), "/stats", url)
    return 0


def cmd_watch(args: argparse.Namespace, extra: list[str]) -> int:
    """Redraw the cluster's figures every ``--interval`` s (``--json``: one line each)."""
    from rich.console import Console
    from rich.live import Live

    from quotacache.client import Client
    from quotacache.client.console import watch_view

    settings = load_config(args)

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
                        def show(snapshot: dict[str, Any] = snapshot) -> None:
                            live.update(watch_view(snapshot, client.base_url), refresh=True)

                        _shown(show, "/dashboard/snapshot", client.base_url)

    asyncio.run(go())
    return 0


def _http_command(args: argparse.Namespace, call: Any) -> int:
    from quotacache.client import Client

    settings = load_config(args)

    async def go() -> dict[str, Any]:
        async with Client(settings, base_url=args.url) as client:
            return dict(await call(client))

    _print(asyncio.run(go()), args.json)
    return 0


def cmd_batch(args: argparse.Namespace, extra: list[str]) -> int:
    symbols, endpoints = parse_symbols(args.symbols), parse_endpoints(args.endpoints)
    return _http_command(args, lambda c: c.batch_update(
        symbols, endpoints, priority=args.priority, force=args.force))


def cmd_symbols(args: argparse.Namespace, extra: list[str]) -> int:
    if args.action == "list":
        if args.symbols or args.endpoints:
            raise CliError("list takes no SYMBOLS and no --endpoints", Exit.USAGE)
        return _http_command(args, lambda c: c.monitored())
    if not args.symbols:
        raise CliError(f"{args.action} needs SYMBOLS (comma-separated)", Exit.USAGE)
    symbols = parse_symbols(args.symbols)
    if args.action == "add":
        endpoints = parse_endpoints(args.endpoints) if args.endpoints else None
        return _http_command(args, lambda c: c.monitor(symbols, endpoints))
    if args.endpoints:
        raise CliError("remove takes no --endpoints", Exit.USAGE)
    return _http_command(args, lambda c: c.unmonitor(symbols))


def cmd_strategy(args: argparse.Namespace, extra: list[str]) -> int:
    from quotacache.policy.strategy import Strategy

    service = check_name(args.service, "service")
    if args.strategy.lower() == "release":
        strategy = None
    elif args.strategy.upper() in Strategy.__members__:
        strategy = args.strategy.upper()
    else:
        raise CliError(f"unknown strategy {args.strategy!r}: use "
                       f"{', '.join(Strategy.__members__)} or release", Exit.USAGE)
    return _http_command(args, lambda c: c.set_strategy(service, strategy))
