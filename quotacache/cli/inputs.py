"""The command line's checks of what it is given: each bad value is a ``CliError`` that
names it (exit code USAGE, or CONFIG and UNREACHABLE for the configuration and the
broker), before anything starts."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Callable
from typing import Any

import httpx

from quotacache.cli.errors import CliError, Exit
from quotacache.settings import Settings, load_settings


def parse_symbol(value: str) -> str:
    from quotacache.streams.records import normalize_symbol

    try:
        return normalize_symbol(value)
    except ValueError:
        raise CliError(f"invalid symbol {value!r}: use 1-30 letters, digits, '_' or '-' "
                       "(or '*')", Exit.USAGE) from None


def parse_symbols(text: str) -> list[str]:
    return [parse_symbol(part) for part in text.split(",")]


def check_name(value: str, what: str) -> str:
    from quotacache.streams.records import NAME_PATTERN

    if not NAME_PATTERN.fullmatch(value):
        raise CliError(f"invalid {what} name {value!r}: use lower-case letters, digits and "
                       "'_'", Exit.USAGE)
    return value


def parse_endpoints(text: str) -> list[str]:
    """``service/endpoint,...``, each part checked."""
    pairs = []
    for pair in text.split(","):
        service, slash, endpoint = pair.partition("/")
        if not slash or "/" in endpoint:
            raise CliError(f"invalid endpoint {pair!r}: use SERVICE/ENDPOINT, e.g. "
                           "cryptometer/ticker", Exit.USAGE)
        pairs.append(f"{check_name(service, 'service')}/{check_name(endpoint, 'endpoint')}")
    return pairs


def request_symbol(settings: Settings, service: str, endpoint: str, symbol: str) -> str:
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
    symbol = parse_symbol(symbol)
    if symbol == "*" and spec.takes_symbol and not spec.fan_out:
        raise CliError(f"endpoint {service}/{endpoint} needs a symbol, e.g. quotacache "
                       f"request {service} {endpoint} BTC", Exit.USAGE)
    return symbol


def worker_url(value: str) -> str:
    url = httpx.URL(value) if "://" in value else None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        raise argparse.ArgumentTypeError(f"{value!r}: use http://HOST:PORT")
    return value


def latency_range(text: str) -> tuple[float, float]:
    low, _, high = text.partition("-")
    try:
        bounds = (float(low), float(high or low))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: use SECONDS or LOW-HIGH, e.g. 0.2-0.5") from None
    if not 0 <= bounds[0] <= bounds[1]:
        raise argparse.ArgumentTypeError(f"{text!r}: need 0 <= LOW <= HIGH")
    return bounds


def port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"{text!r}: a port is 1-65535")
    return port


def positive(kind: type[int] | type[float]) -> Callable[[str], int | float]:
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

def load_config(args: argparse.Namespace) -> Settings:
    path = args.config or args.root_config or os.environ.get("QUOTACACHE_CONFIG")
    return load_settings(path)  # a ConfigError exits with Exit.CONFIG (cli/errors.py)


def check_broker(settings: Settings) -> None:
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


def broker_errors(settings: Settings, run: Callable[[], Any]) -> Any:
    """``run()``, with the broker's connection errors as one line."""
    from aiokafka.errors import KafkaError

    try:
        return run()
    except KafkaError as exc:
        raise CliError(f"cannot reach the broker at {settings.broker.bootstrap_servers()} "
                       f"({type(exc).__name__})", Exit.UNREACHABLE) from None
