"""Figures from every worker of the app, merged into one answer.

Each worker counts what it did itself (reads it answered, calls it made, entries of the
partitions it owns). ``/stats`` and the dashboard must show the whole cluster whichever
worker is asked, so the worker asked collects ``/stats?scope=local`` from its peers (the
hosts of the current assignment) and adds them up. A peer that does not answer in time
is listed with its error; its figures are missing, never guessed.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import aiohttp

from quotacache.runtime import Runtime
from quotacache.tables.stats import FIELDS, rates
from quotacache.web.guard import peer_headers

PEER_TIMEOUT = aiohttp.ClientTimeout(total=2.0)


def own_url(rt: Runtime) -> str:
    return str(rt.app.conf.canonical_url).rstrip("/")


def worker_urls(rt: Runtime) -> list[str]:
    """This worker and every host the current assignment names, this one first."""
    me = own_url(rt)
    try:
        hosts = {str(url).rstrip("/") for url in rt.app.router.tables_metadata()}
    except Exception:  # before the first assignment
        hosts = set()
    return [me] + sorted(hosts - {me})


async def collect(rt: Runtime, local: dict[str, Any]) -> dict[str, Any]:
    """Every worker's local /stats (``local`` is this one's), merged."""
    peers = worker_urls(rt)[1:]
    answers = await asyncio.gather(*(_local_stats(rt, url) for url in peers))
    workers = {own_url(rt): "ok"}
    snapshots = [local]
    for url, answer in zip(peers, answers, strict=True):
        if isinstance(answer, dict):
            workers[url] = "ok"
            snapshots.append(answer)
        else:
            workers[url] = answer
    return {**merge(snapshots), "scope": "cluster", "workers": workers}


async def _local_stats(rt: Runtime, url: str) -> dict[str, Any] | str:
    try:
        async with rt.app.http_client.get(f"{url}/stats", params={"scope": "local"},
                                          headers=peer_headers(rt.settings.web),
                                          timeout=PEER_TIMEOUT) as response:
            if response.status != 200:
                return f"HTTP {response.status}"
            return dict(await response.json())
    except Exception as exc:  # down, rebalancing or slow: say so, do not fail the answer
        return f"unreachable: {type(exc).__name__}"


def merge(snapshots: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum counters per endpoint, recompute rates, and combine cache freshness."""
    endpoints: dict[str, Counter[str]] = {}
    freshness: dict[str, dict[str, float]] = {}
    for snap in snapshots:
        for name, counts in snap.get("endpoints", {}).items():
            endpoints.setdefault(name, Counter()).update(
                {f: int(counts.get(f, 0)) for f in FIELDS})
        for name, part in snap.get("freshness", {}).items():
            into = freshness.setdefault(name, {"entries": 0, "fresh": 0, "stale": 0,
                                               "oldest_age": 0.0})
            for f in ("entries", "fresh", "stale"):
                into[f] += part.get(f, 0)
            into["oldest_age"] = max(into["oldest_age"], part.get("oldest_age") or 0.0)
    total: Counter[str] = Counter()
    for counts in endpoints.values():
        total.update(counts)
    first = snapshots[0]
    return {
        **{f: total[f] for f in FIELDS},
        **rates(total),
        "endpoints": {name: {f: c[f] for f in FIELDS} for name, c in sorted(endpoints.items())},
        "freshness": dict(sorted(freshness.items())),
        # Global tables: every worker holds the same copy.
        "monitored_symbols": first.get("monitored_symbols", 0),
        "strategy_history": first.get("strategy_history", {}),
    }

