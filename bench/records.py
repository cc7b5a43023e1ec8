"""``python -m bench records``: broker records per unit of work, case by case.

One worker on its own embedded broker (the demo's config, default settings) and the
simulator. For each case, ``--n`` distinct keys, one at a time; the records added to
every topic are counted (true log ends) once the worker has gone quiet again:

* a read of a fresh key (a HIT),
* a read of a stale key (``?max_age=`` below its age: the read asks for a newer one),
* a read of a missing key (the first read of a key: MISS, then the fetch),
* a refresh request for a key already fresh (what the demo's load mostly publishes),
* a forced refresh: one upstream call and nothing else.

Writes bench/results/records.json and prints a table (records per case, per topic).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import time
from collections import Counter
from pathlib import Path

import httpx

from bench.soak import demo_stack, topic_records
from quotacache.client import Client

RESULTS = Path(__file__).parent / "results"
QUIET = 2.5  # seconds without a new record: the worker is done


async def settle(bootstrap: str) -> dict[str, int]:
    """Topic sizes once nothing was added for QUIET seconds (ticks stop when idle)."""
    last = await topic_records(bootstrap)
    since = time.monotonic()
    while time.monotonic() - since < QUIET:
        await asyncio.sleep(0.5)
        now = await topic_records(bootstrap)
        if now != last:
            last, since = now, time.monotonic()
    return last


def grown(before: dict[str, int], after: dict[str, int]) -> Counter[str]:
    return Counter({t: n - before.get(t, 0) for t, n in after.items() if n > before.get(t, 0)})


async def measure(url: str, bootstrap: str, settings, n: int) -> dict[str, dict]:
    cases: dict[str, dict] = {}
    symbols = [f"R{i}" for i in range(n)]
    async with httpx.AsyncClient(base_url=url, timeout=30.0) as http, \
            Client(settings, base_url=url) as client:

        async def case(name: str, action) -> None:
            before = await settle(bootstrap)
            calls = (await http.get("/stats?scope=local")).json()["upstream_calls"]
            for symbol in symbols:
                await action(symbol)
            after = await settle(bootstrap)
            made = (await http.get("/stats?scope=local")).json()["upstream_calls"] - calls
            growth = grown(before, after)
            cases[name] = {"records_per_unit": round(sum(growth.values()) / n, 2),
                           "upstream_calls_per_unit": round(made / n, 2),
                           "per_topic": {t: round(c / n, 2) for t, c in growth.most_common()}}
            print(name, json.dumps(cases[name]), flush=True)

        # Each endpoint allows 10 calls a minute: the cases that call use n each of
        # open_interest (missing, then stale) and ticker (forced).
        path = "/cache/cryptometer/open_interest/{}"
        await case("read of a missing key", lambda s: http.get(path.format(s) + "?wait=5"))
        await case("read of a fresh key", lambda s: http.get(path.format(s)))
        await asyncio.sleep(1.0)
        await case("read of a stale key",
                   lambda s: http.get(path.format(s) + "?max_age=0.5&wait=5"))
        await case("refresh request, key fresh",
                   lambda s: client.request_refresh("cryptometer", "open_interest", s))
        await case("forced refresh of a new key (one upstream call)",
                   lambda s: client.request_refresh("cryptometer", "ticker", s, force=True))
    return cases


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench records", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=4, help="keys per case (at most 5: each "
                        "endpoint allows 10 calls a minute)")
    parser.add_argument("--name", default="records")
    args = parser.parse_args(argv)
    with demo_stack("quotacache-records-", sim_latency="0.01-0.03") as stack:
        cases = asyncio.run(measure(stack.web_url, stack.broker.bootstrap, stack.settings,
                                    args.n))
    shutil.rmtree(stack.work, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(cases, indent=1) + "\n")
    print("\n| case | records | upstream calls | by topic |\n|---|---|---|---|")
    for name, c in cases.items():
        topics = ", ".join(f"{t.split('.', 1)[-1]} {v}" for t, v in c["per_topic"].items())
        print(f"| {name} | {c['records_per_unit']} | {c['upstream_calls_per_unit']} | {topics} |")


if __name__ == "__main__":
    main()
