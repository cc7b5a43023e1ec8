"""``python -m bench`` (or ``make bench``): the side-by-side comparison, in one run.

Replays one trace against direct upstream calls, nginx as a caching proxy, and
quotacache with one and with two workers, all against the upstream simulator with the
trace's limits; runs the micro-benchmarks; writes bench/results/compare.{json,md,png}.
Every system is scored against the trace's optimum (bench/optimum.py), and a missed
target is printed loudly. About 7 minutes on 2 cores. Not part of CI.

    python -m bench [--trace zipf|tight|longtail|shift|FILE] [--seed N] [--only SYSTEMS]
    python -m bench optimum --trace NAME    # just the optima, no systems run
    python -m bench lean [--help]           # the lean-worker figures (bench/lean.py)
    python -m bench brokers [--help]        # the compose topology on Tansu and on Kafka
    python -m bench soak --hours N          # RSS and records over time (bench/soak.py)
    python -m bench records                 # records per read and per call (bench/records.py)
    python -m bench big-rotation            # one rotation with 100,000 cached keys
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import optimum, report, trace
from bench.harness import measure
from bench.systems import API_KEY, WAIT, Direct, Nginx, Quotacache
from quotacache.dev.broker import EmbeddedBroker, free_port
from quotacache.dev.compose import load_topology
from quotacache.dev.kafka_broker import KafkaBroker, ensure_jars
from quotacache.dev.processes import start_simulator
from quotacache.settings import load_settings

RESULTS = Path(__file__).parent / "results"


def micro() -> dict:
    """Medians and minimums of bench/micro_test.py, in microseconds."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        str(Path(__file__).parent / "micro_test.py"), "--benchmark-only",
                        f"--benchmark-json={out.name}", "-o", "addopts="], check=True,
                       stdout=subprocess.DEVNULL)
        data = json.loads(Path(out.name).read_text())
    return {b["name"].removeprefix("test_").replace("_", " "):
            {"mean_us": b["stats"]["median"] * 1e6, "min_us": b["stats"]["min"] * 1e6}
            for b in data["benchmarks"]}


def solve_optima(the_trace: trace.Trace, time_limit: float) -> dict[str, dict]:
    """The trace's optima, each printed as it is solved (they take seconds to a minute)."""
    found = {}
    for objective in optimum.OBJECTIVES:
        best = optimum.solve(the_trace, objective, time_limit=time_limit)
        found[objective] = best.as_dict()
        print(f"optimum {objective}: {best.value}/{best.reads} reads (bound {best.bound}, "
              f"gap {best.gap:.2%}, {best.status}) in {best.seconds:.1f} s", flush=True)
    return found


def print_variants(the_trace: trace.Trace, optima: dict[str, dict], time_limit: float
                   ) -> None:
    """How much of the optimum needs calling keys before anyone has read them, and how
    much more it would be if its reads waited for a call as the bench's do; and what is
    left of one optimum when the other targets must be met too."""
    variants = {"calling only keys already read": {"after_first_read": True},
                f"with reads that wait {WAIT:g} s": {"wait": WAIT}}
    for objective in ("fresh", "answered"):
        for name, options in variants.items():
            found = optimum.solve(the_trace, objective, time_limit=time_limit, **options)
            print(f"optimum {objective}, {name}: {found.value} reads, "
                  f"{found.value / optima[objective]['value']:.3f} of the optimum", flush=True)
    # Both targets at once: what one optimum leaves when the other must be met.
    for objective, floor_objective in (("answered", "fresh"), ("fresh", "answered")):
        share = report.TARGETS[floor_objective]
        found = optimum.solve_joint(the_trace, objective, floor_objective,
                                    share * optima[floor_objective]["value"],
                                    time_limit=time_limit)
        print(f"optimum {objective} of the schedules with {floor_objective} >= {share} of "
              f"its optimum: {found.value} reads, "
              f"{found.value / optima[objective]['value']:.3f} of the optimum "
              f"(bound {found.bound / optima[objective]['value']:.3f}, {found.status})",
              flush=True)
    # All three targets at once: answered reads of the schedules that meet the fresh and
    # the critical ones, with foresight and as the bench's systems face the trace.
    fresh_floor = report.TARGETS["fresh"] * optima["fresh"]["value"]
    critical_floor = report.TARGETS["critical"] * optima["critical"]["value"]
    for name, options in (("with foresight", {}),
                          (f"calling only keys already read, reads waiting {WAIT:g} s",
                           {"after_first_read": True, "wait": WAIT})):
        found = optimum.solve_joint(the_trace, "answered", "fresh", fresh_floor,
                                    critical_floor=critical_floor, time_limit=time_limit,
                                    **options)
        print(f"optimum answered of the schedules meeting the fresh and critical targets "
              f"({name}): {found.value} reads, "
              f"{found.value / optima['answered']['value']:.3f} of the optimum "
              f"(fresh {found.score.fresh / optima['fresh']['value']:.3f}, critical "
              f"{found.score.critical_fresh / max(1, optima['critical']['value']):.3f}; "
              f"{found.status})", flush=True)


def main() -> None:
    if sys.argv[1:2] == ["lean"]:
        from bench import lean
        return lean.main(sys.argv[2:])
    if sys.argv[1:2] == ["brokers"]:
        from bench import brokers
        return brokers.main(sys.argv[2:])
    if sys.argv[1:2] == ["big-rotation"]:
        from bench import big_rotation
        return big_rotation.main(sys.argv[2:])
    if sys.argv[1:2] == ["records"]:
        from bench import records
        return records.main(sys.argv[2:])
    if sys.argv[1:2] == ["soak"]:
        from bench import soak
        return soak.main(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", choices=("compare", "optimum"), default="compare",
                        help="compare the systems (default), or only print the trace's optima")
    parser.add_argument("--trace", default="zipf",
                        help=f"built-in trace ({', '.join(trace.BUILT_IN)}) or JSON-lines file")
    parser.add_argument("--seed", type=int, default=7, help="seed of a built-in trace")
    parser.add_argument("--duration", type=float, help="built-in trace length (s)")
    parser.add_argument("--rate", type=float, help="built-in trace's base reads per second")
    parser.add_argument("--only", help="comma-separated systems (default: all)")
    parser.add_argument("--time-limit", type=float, default=60.0,
                        help="seconds per optimum solve (past it, the gap is reported)")
    parser.add_argument("--broker", choices=("embedded", "kafka"), default="embedded",
                        help="quotacache's broker: the embedded one, or a real Kafka with the "
                             "settings of deploy/topology.toml (the docker-compose topology)")
    parser.add_argument("--reads-log", type=Path, metavar="DIR",
                        help="write every read's outcome (status, fresh, answered, age) to "
                             "DIR/<system>.jsonl, to see where a system loses reads")
    args = parser.parse_args()
    try:
        the_trace = trace.named(args.trace, args.seed, args.duration, args.rate)
    except trace.TraceError as exc:
        parser.error(str(exc))
    summary = trace.summary(the_trace)
    print(report.trace_line(summary), flush=True)
    optima = solve_optima(the_trace, args.time_limit)
    if args.command == "optimum":
        print_variants(the_trace, optima, args.time_limit)
        print("\n" + report.optimum_table(optima, summary))
        return
    os.environ["CRYPTOMETER_API_KEY"] = API_KEY
    ttls = {name: the_trace.ttls[name] for name in {read.endpoint for read in the_trace.reads}}
    work = Path(tempfile.mkdtemp(prefix="quotacache-compare-"))
    broker: EmbeddedBroker | KafkaBroker
    if args.broker == "kafka":
        broker = KafkaBroker(ensure_jars(), work / "kafka",
                             props=load_topology().kafka_settings).start()
    else:
        broker = EmbeddedBroker(free_port(), log_path=work / "broker.log").start()
    broker_url = f"kafka://{broker.bootstrap}" if args.broker == "kafka" else None
    assert broker.process is not None
    sim_port = free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    simulator = start_simulator(sim_port, latency="0.2-0.5", log_path=work / "sim.log")
    systems = [Direct(sim_url), Nginx(sim_port, work, ttls)] + [
        Quotacache(n, broker.port, broker.process.pid, sim_url, work, ttls, the_trace.limits,
                   broker_url)
        for n in (1, 2)]
    if args.only:
        wanted = args.only.split(",")
        unknown = set(wanted) - {s.name for s in systems}
        if unknown:
            parser.error(f"unknown systems {sorted(unknown)}: "
                         f"use {', '.join(s.name for s in systems)}")
        systems = [s for s in systems if s.name in wanted]
    rows = []
    try:
        for system in systems:
            began = time.monotonic()
            print(f"{system.name}: replaying ...", flush=True)
            settings = (load_settings(system.config) if isinstance(system, Quotacache)
                        else None)
            row = measure(system, the_trace, sim_url, settings, args.reads_log)
            rows.append(row)
            print(f"{system.name}: {row['upstream_calls']} calls ({row['rejected_429']} 429s), "
                  f"fresh {row['fresh']:.1%}, answered {row['answered']:.1%}, "
                  f"p50/p99 {row['p50_ms']}/{row['p99_ms']} ms "
                  f"({time.monotonic() - began:.0f} s)", flush=True)
    finally:
        simulator.stop()
        broker.stop()
    print("micro-benchmarks ...", flush=True)
    results = {"machine": f"{os.cpu_count()} cores, Python {sys.version.split()[0]}",
               "trace": summary, "optimum": optima, "systems": rows, "micro": micro()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "compare.json").write_text(json.dumps(results, indent=2) + "\n")
    report.main()


if __name__ == "__main__":
    main()
