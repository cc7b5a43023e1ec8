"""Where a system loses reads: ``python -m bench.reads_log DIR`` summarises the logs that
``python -m bench --reads-log DIR`` writes, one JSON line per read of the trace.

Per system: reads answered stale and reads not answered, by endpoint. For two systems
(the first two logs, e.g. ``quotacache-1`` and ``quotacache-2``): the keys whose
unanswered reads differ most, with when each system first answered them (a first fetch
made late or never is where answered reads go), and the calls each made on an endpoint
(``--endpoint``), recovered from the ages the reads were answered with.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def endpoint(key: str) -> str:
    return key.split("/", 1)[0]


def summary(name: str, rows: list[dict]) -> list[str]:
    stale = [r for r in rows if r["answered"] and not r["fresh"]]
    missed = [r for r in rows if not r["answered"]]
    return [f"{name}: {len(rows)} reads, {sum(r['fresh'] for r in rows)} fresh, "
            f"{len(rows) - len(missed)} answered",
            "  stale by endpoint:  " + _counts(endpoint(r["key"]) for r in stale),
            "  missed by endpoint: " + _counts(endpoint(r["key"]) for r in missed)]


def first_answers(rows: list[dict]) -> dict[str, float]:
    first: dict[str, float] = {}
    for row in rows:
        if row["answered"]:
            first.setdefault(row["key"], row["at"])
    return first


def differences(a: tuple[str, list[dict]], b: tuple[str, list[dict]], top: int) -> list[str]:
    (name_a, rows_a), (name_b, rows_b) = a, b
    missed_a = Counter(r["key"] for r in rows_a if not r["answered"])
    missed_b = Counter(r["key"] for r in rows_b if not r["answered"])
    first_a, first_b = first_answers(rows_a), first_answers(rows_b)
    reads = Counter(r["key"] for r in rows_a)
    ranked = sorted(reads, key=lambda k: abs(missed_b[k] - missed_a[k]), reverse=True)
    lines = [f"keys whose missed reads differ most ({name_a} / {name_b}; first answer at s):"]
    for key in ranked[:top]:
        lines.append(f"  {key:36} {reads[key]:5} reads  missed {missed_a[key]:3} / "
                     f"{missed_b[key]:3}  first answer {_at(first_a.get(key))} / "
                     f"{_at(first_b.get(key))}")
    return lines


def calls(rows: list[dict], on: str) -> list[tuple[float, str]]:
    """The calls on endpoint ``on`` as the reads saw them: each distinct generation time
    (the read's time plus its latency, less the data's age) is one call."""
    made = {(round(r["at"] + r["ms"] / 1000 - r["age"]), r["key"].split("/", 1)[1])
            for r in rows if r["age"] is not None and endpoint(r["key"]) == on}
    return sorted(made)


def _counts(names: object) -> str:
    return ", ".join(f"{name} {n}" for name, n in Counter(names).most_common()) or "-"


def _at(value: float | None) -> str:
    return "never" if value is None else f"{value:5.1f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.reads_log", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", type=Path, help="the directory given to --reads-log")
    parser.add_argument("--top", type=int, default=12, help="keys listed (default 12)")
    parser.add_argument("--endpoint", help="list each system's calls on this endpoint")
    args = parser.parse_args(argv)
    logs = [(path.stem, load(path)) for path in sorted(args.dir.glob("*.jsonl"))]
    if not logs:
        parser.error(f"no *.jsonl in {args.dir}: run python -m bench --reads-log {args.dir}")
    for name, rows in logs:
        print("\n".join(summary(name, rows)))
    if len(logs) >= 2:
        print("\n".join(differences(logs[0], logs[1], args.top)))
    if args.endpoint:
        for name, rows in logs:
            made = calls(rows, args.endpoint)
            print(f"{name}: {len(made)} calls on {args.endpoint}: "
                  + " ".join(f"{at:.0f}:{symbol}" for at, symbol in made))


if __name__ == "__main__":
    main()
