"""``python -m bench brokers``: the docker-compose topology on Tansu and on Kafka, side by side.

For each broker, the topology of docker-compose.yml as ``quotacache.dev.compose.Stack``
runs it from deploy/topology.toml (the same list the compose file follows): the broker,
the upstream simulator and two workers, with the topology's worker environment. The
broker is a real single-node Kafka (KRaft, the topology's settings), or the embedded
Tansu in its place with nothing else changed. The workers get the trace's TTLs and
limits and 4 partitions on both brokers (Kafka's default; the embedded default of 1
would leave the second worker standing by), so both run the same two-worker deployment.

Per broker: launch to both workers in one group, ``--idle-seconds`` with the stack up and
nothing cached, the trace replayed against the two workers (reads alternate between them;
each forwards to its key's owner), then ``--idle-seconds`` again with no reads. Reported:
fresh and answered reads and their fractions of the trace's optimum (bench/optimum.py,
cached in bench/results/optima.json), upstream calls and 429s, CPU seconds of the workers
and of the broker over the replay, peak RSS of the workers (both together) and of the
broker, idle CPU (% of one core) before and after the load, the upstream calls while idle
after it (the scheduler renews popular keys), the consumer-group generations the workers
joined (rebalances), misses (202: no data within the read's 2 s wait) and any other
status. Writes bench/results/brokers.{json,md}.

    python -m bench brokers [--trace zipf] [--seed 7] [--idle-seconds 30] [--only tansu,kafka]
    python -m bench brokers --report    # brokers.md again from brokers.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench import trace
from bench.harness import measure
from bench.optimum import cached_optima
from bench.systems import API_KEY, WAIT, System, cpu_seconds, quotacache_config
from bench.trace import Read
from quotacache.dev.compose import Stack, load_topology
from quotacache.dev.processes import process_tree
from quotacache.settings import Settings, load_settings

RESULTS = Path(__file__).parent / "results"
#: Name in the table -> Stack's broker.
BROKERS = {"tansu": "embedded", "kafka": "kafka"}
PARTITIONS = 4
#: Of the cluster's /stats after the replay: what went wrong, if anything.
STATS = ("hits", "misses", "stale_served", "upstream_calls", "rate_limit_blocks",
         "rate_limited", "retries", "dropped_unread", "late_calls", "errors", "dead_letters",
         "workers")
SETTLE_S = 5.0  # after the replay: in-flight refreshes land before idle is measured
COLUMNS = [("broker", "broker", "{}"), ("fresh", "fresh", "{:.1%}"),
           ("answered", "answered", "{:.1%}"),
           ("fresh_per_optimum", "fresh / optimum", "{:.3f}"),
           ("answered_per_optimum", "answered / optimum", "{:.3f}"),
           ("upstream_calls", "upstream calls", "{}"), ("rejected_429", "429s", "{}"),
           ("cpu_workers_s", "CPU s workers", "{:.1f}"),
           ("cpu_broker_s", "CPU s broker", "{:.1f}"),
           ("peak_rss_workers_mb", "peak RSS workers MB", "{:.0f}"),
           ("peak_rss_broker_mb", "peak RSS broker MB", "{:.0f}"),
           ("idle_before_cpu_pct", "idle CPU % before (workers + broker)", "{}"),
           ("idle_cpu_pct", "idle CPU % after (workers + broker)", "{}"),
           ("ready_s", "launch to ready s", "{:.1f}"),
           ("idle_upstream_calls", "calls while idle after", "{}"),
           ("group_joins", "group generations", "{}"),
           ("misses_202", "misses (202)", "{}"), ("errors", "other errors", "{}")]


class ComposeSystem(System):
    """A started Stack, as the harness replays against it (the Stack is started and
    stopped by ``run_broker``, so start and stop here do nothing)."""

    hears_signals = True

    def __init__(self, name: str, stack: Stack, config: Path):
        self.name = name
        self.stack = stack
        self.config = config
        self.base_url = stack.urls[0]
        self.broker_pid = stack.broker_pid or 0

    def url_for(self, index: int) -> str:
        return self.stack.urls[index % len(self.stack.urls)]

    def path(self, read: Read) -> str:
        return f"/cache/cryptometer/{read.endpoint}/{read.symbol}?wait={WAIT:g}"

    def worker_pids(self) -> list[int]:
        return [pid for child in self.stack.workers for pid in process_tree(child.pid)]

    def pids(self) -> list[int]:
        return [*self.worker_pids(), self.broker_pid]


def bench_settings(config: Path, stack: Stack) -> Settings:
    """The workers' settings as the bench process needs them (to signal volatility): the
    config file, with the broker the stack's environment gives the workers."""
    env = stack.worker_env(stack.bootstrap, f"127.0.0.1:{stack.sim_port}")
    broker: dict[str, object] = {"url": env["QUOTACACHE_BROKER__URL"]}
    if "QUOTACACHE_BROKER__EMBEDDED_PORT" in env:
        broker["embedded_port"] = int(env["QUOTACACHE_BROKER__EMBEDDED_PORT"])
    return load_settings(config, broker=broker)


def wait_one_group(urls: list[str], timeout: float = 120.0) -> None:
    """Until the last worker's /stats lists every worker as ok (one group, assigned)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            workers = httpx.get(f"{urls[-1]}/stats", timeout=5).json()["workers"]
            if list(workers.values()).count("ok") == len(urls):
                return
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"the workers did not form one group in {timeout:.0f} s")
        time.sleep(0.5)


def group_joins(logs: list[Path]) -> int:
    """How many generations of the consumer group the workers joined so far: 2 when the
    first worker joined alone and then both together, each rebalance since adds one
    (counted, not read off the numbers: Tansu numbers from 0, Kafka from 1)."""
    return len({m for log in logs if log.exists()
                for m in re.findall(r"Joined group '[^']*' \(generation (\d+)\)",
                                    log.read_text(errors="replace"))})


def idle(system: ComposeSystem, sim_url: str, seconds: float, prefix: str = "idle") -> dict:
    """CPU of the workers and the broker over ``seconds`` with the stack up and no reads,
    and the upstream calls made meanwhile (the scheduler's renewals, if any)."""
    time.sleep(SETTLE_S)
    workers, broker = system.worker_pids(), [system.broker_pid]
    calls_before = httpx.get(f"{sim_url}/_sim/stats").json()
    before = cpu_seconds(workers), cpu_seconds(broker)
    began = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - began
    used = cpu_seconds(workers) - before[0], cpu_seconds(broker) - before[1]
    calls_after = httpx.get(f"{sim_url}/_sim/stats").json()
    return {f"{prefix}_s": round(elapsed, 1),
            f"{prefix}_workers_pct": round(100 * used[0] / elapsed, 2),
            f"{prefix}_broker_pct": round(100 * used[1] / elapsed, 2),
            f"{prefix}_total_pct": round(100 * sum(used) / elapsed, 2),
            f"{prefix}_upstream_calls": (calls_after["accepted"] + calls_after["rejected"]
                                         - calls_before["accepted"] - calls_before["rejected"])}


def topology_stack(name: str, the_trace: trace.Trace, work: Path) -> Stack:
    """The compose topology (deploy/topology.toml) with ``name``'s broker, not started;
    its workers' config file holds the trace's TTLs and limits, and leaves the broker and
    the simulator to the topology's environment."""
    work.mkdir(parents=True, exist_ok=True)
    ttls = {n: the_trace.ttls[n] for n in {read.endpoint for read in the_trace.reads}}
    config = quotacache_config(work / "quotacache.toml", f"bench-brokers-{name}", None, None,
                               ttls, the_trace.limits, partitions=PARTITIONS)
    return Stack(work, broker=BROKERS[name], config=config)


def run_broker(name: str, the_trace: trace.Trace, work: Path, idle_seconds: float) -> dict:
    """One broker's row: start the topology, replay, idle, stop everything."""
    stack = topology_stack(name, the_trace, work)
    config = stack.config
    assert config is not None
    began = time.monotonic()
    print(f"{name}: starting the topology ...", flush=True)
    try:
        stack.start()
        wait_one_group(stack.urls)
        ready = time.monotonic() - began
        print(f"{name}: broker on {stack.bootstrap}, workers on {', '.join(stack.urls)}, "
              f"ready in {ready:.1f} s", flush=True)
        system = ComposeSystem(name, stack, config)
        print(f"{name}: idle before the load ...", flush=True)
        before = idle(system, stack.simulator_url, idle_seconds, "idle_before")
        print(f"{name}: replaying ...", flush=True)
        row = before | measure(system, the_trace, stack.simulator_url,
                               bench_settings(config, stack))
        print(f"{name}: idle after the load ...", flush=True)
        stats = httpx.get(f"{stack.urls[-1]}/stats", timeout=10).json()  # the cluster's
        row |= idle(system, stack.simulator_url, idle_seconds)
        row["group_joins"] = group_joins([w.log_path for w in stack.workers if w.log_path])
        alive = [w.alive() for w in stack.workers]
    finally:
        stack.stop()
    row["broker"] = name
    row["ready_s"] = round(ready, 1)
    row["workers_alive_at_end"] = all(alive)
    row["cpu_workers_s"] = round(row["cpu_s"] - row["cpu_broker_s"], 2)
    row["peak_rss_workers_mb"] = round(row["peak_rss_mb"] - row["peak_rss_broker_mb"], 1)
    # 202: nothing cached yet and no answer within the read's wait (a clear miss)
    row["misses_202"] = row["statuses"].get("202", 0)
    row["errors"] = sum(n for status, n in row["statuses"].items() if status not in {"200", "202"})
    row["cluster_stats"] = {k: stats.get(k) for k in STATS}
    return row


def scored(rows: list[dict], optima: dict) -> list[dict]:
    for row in rows:
        row["fresh_per_optimum"] = round(row["fresh_reads"] / optima["fresh"]["value"], 3)
        row["answered_per_optimum"] = round(row["answered_reads"] / optima["answered"]["value"],
                                            3)
        for when in ("idle_before", "idle"):
            row[f"{when}_cpu_pct"] = (f"{row[f'{when}_total_pct']:.1f} "
                                      f"({row[f'{when}_workers_pct']:.1f} + "
                                      f"{row[f'{when}_broker_pct']:.1f})")
    return rows


def table(results: dict) -> str:
    optima, summary = results["optimum"], results["trace"]
    reads = summary["reads"]
    lines = [f"Trace {summary['name']} seed {results['seed']}: {reads} reads of "
             f"{summary['keys_read']} keys in {summary['duration_s']:.0f} s; optimum "
             f"{optima['fresh']['value'] / reads:.1%} fresh, "
             f"{optima['answered']['value'] / reads:.1%} answered. Tansu (embedded) and Kafka "
             f"{results['kafka_version']} (KRaft, one node); two workers, "
             f"{PARTITIONS} partitions; idle CPU over {results['idle_seconds']:.0f} s "
             f"before and after the replay, {SETTLE_S:.0f} s after the last activity. "
             f"{results['machine']}, {results['date']}.", "",
             "| " + " | ".join(title for _, title, _ in COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    for row in results["brokers"]:
        lines.append("| " + " | ".join("-" if row.get(key) is None else fmt.format(row[key])
                                       for key, _, fmt in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench brokers",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trace", default="zipf", choices=sorted(trace.BUILT_IN),
                        help="built-in trace (its optimum is cached per seed)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--only", default=",".join(BROKERS),
                        help="comma-separated brokers: %(default)s")
    parser.add_argument("--work", type=Path, help="logs and data (default: a temp dir, removed)")
    parser.add_argument("--report", action="store_true",
                        help="only render bench/results/brokers.md from brokers.json again")
    args = parser.parse_args(argv)
    if args.report:
        results = json.loads((RESULTS / "brokers.json").read_text())
        (RESULTS / "brokers.md").write_text(table(results))
        print(table(results))
        return
    wanted = args.only.split(",")
    if set(wanted) - set(BROKERS):
        parser.error(f"unknown brokers {sorted(set(wanted) - set(BROKERS))}: use {args.only}")
    the_trace = trace.named(args.trace, args.seed, None, None)
    summary = trace.summary(the_trace)
    optima = cached_optima(the_trace, args.seed)
    os.environ["CRYPTOMETER_API_KEY"] = API_KEY  # the topology's workers take it from here
    topology = load_topology()
    print(f"{summary['reads']} reads; Kafka {topology.kafka_version}; workers "
          f"{', '.join(name for name, _ in topology.workers)}", flush=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="quotacache-brokers-"))
    rows = []
    try:
        for name in wanted:
            row = run_broker(name, the_trace, work / name, args.idle_seconds)
            print(f"{name}: fresh {row['fresh']:.1%}, answered {row['answered']:.1%}, "
                  f"{row['upstream_calls']} calls ({row['rejected_429']} 429s), CPU "
                  f"{row['cpu_workers_s']} + {row['cpu_broker_s']} s, idle "
                  f"{row['idle_total_pct']} %", flush=True)
            rows.append(row)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    results = {"machine": f"{os.cpu_count()} cores, Python {sys.version.split()[0]}",
               "date": time.strftime("%Y-%m-%d", time.gmtime()),
               "trace": summary, "seed": args.seed, "idle_seconds": args.idle_seconds,
               "kafka_version": topology.kafka_version, "partitions": PARTITIONS,
               "optimum": optima, "brokers": scored(rows, optima)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "brokers.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "brokers.md").write_text(table(results))
    print("\n" + table(results))
    for row in rows:
        if row["rejected_429"] or row["errors"] or not row["workers_alive_at_end"]:
            print(f"!!! {row['broker']}: {row['rejected_429']} x 429, {row['errors']} reads "
                  f"neither 200 nor 202, workers alive at the end: "
                  f"{row['workers_alive_at_end']}")
