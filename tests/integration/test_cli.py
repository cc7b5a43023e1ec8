"""The command line against a live worker: exit codes that mean something, --json output."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import poll

pytestmark = pytest.mark.integration


def cli(deployment, worker, *args):
    http = {"get", "stats", "watch", "batch", "symbols", "strategy"}
    extra = ["--url", worker.url] if args[0] in http else []
    return subprocess.run([sys.executable, "-m", "quotacache", args[0], "--config",
                           str(deployment.config_path), *args[1:], *extra],
                          capture_output=True, text=True, timeout=60)


def test_cli_requests_reads_batches_and_manages_symbols(deployment):
    worker = deployment.start_worker()
    assert cli(deployment, worker, "request", "cryptometer", "ticker", "BTC").returncode == 0
    poll(lambda: cli(deployment, worker, "get", "cryptometer", "ticker", "BTC").returncode == 0,
         timeout=20, interval=0.5, message="HIT through the CLI")
    got = cli(deployment, worker, "get", "cryptometer", "ticker", "BTC", "--json")
    assert json.loads(got.stdout)["status"] == "HIT"
    miss = cli(deployment, worker, "get", "cryptometer", "ls_ratio", "DOGE")
    assert miss.returncode == 3  # MISS: a refresh was requested
    unknown = cli(deployment, worker, "get", "nope", "ticker", "BTC")
    assert unknown.returncode == 4 and "unknown service" in unknown.stderr
    # What the worker refuses: its message on one line, exit 4; bad input: exit 2.
    for args, code, named in (
            (("get", "nope", "ticker", "BTC"), 4, "'nope'"),
            (("get", "cryptometer", "nope", "BTC"), 4, "'nope'"),
            (("get", "cryptometer", "ticker"), 4, "needs a symbol"),
            (("batch", "BTC", "cryptometer/nope"), 4, "nope"),
            (("strategy", "nope", "MINIMAL"), 4, "'nope'"),
            (("get", "cryptometer", "ticker", "BAD SYM"), 2, "'BAD SYM'"),
            (("request", "cryptometer", "ticker", "BAD SYM"), 2, "'BAD SYM'"),
            (("request", "cryptometer", "nope", "BTC"), 2, "'nope'")):
        refused = cli(deployment, worker, *args)
        assert refused.returncode == code, (args, refused.stderr)
        assert len(refused.stderr.splitlines()) == 1 and named in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr + refused.stdout

    batch = cli(deployment, worker, "batch", "BTC,ETH", "cryptometer/ticker,cryptometer/coinlist",
                "--json")
    assert batch.returncode == 0 and len(json.loads(batch.stdout)["requested"]) == 3
    added = cli(deployment, worker, "symbols", "add", "SOL", "--endpoints",
                "cryptometer/ticker", "--json")
    assert json.loads(added.stdout)["symbols"] == {"SOL": ["cryptometer/ticker"]}
    assert cli(deployment, worker, "symbols", "remove", "SOL").returncode == 0
    pinned = cli(deployment, worker, "strategy", "cryptometer", "CONSERVATIVE", "--json")
    assert json.loads(pinned.stdout)["strategy"] == "CONSERVATIVE"
    stats = cli(deployment, worker, "stats", "--json")
    assert json.loads(stats.stdout)["upstream_calls"] >= 1
    table = cli(deployment, worker, "stats")
    assert table.returncode == 0 and "ticker" in table.stdout and "hit rate" in table.stdout

    watched = cli(deployment, worker, "watch", "--count", "3", "--interval", "1", "--json")
    snapshots = [json.loads(line) for line in watched.stdout.splitlines()]
    assert watched.returncode == 0 and len(snapshots) == 3
    assert snapshots[0]["time"] < snapshots[1]["time"] < snapshots[2]["time"]
    assert snapshots[2]["services"]["cryptometer"]["strategy"] == "CONSERVATIVE"
    live = cli(deployment, worker, "watch", "--count", "2", "--interval", "0.2")
    assert live.returncode == 0 and "cryptometer" in live.stdout and "CONSERVATIVE" in live.stdout
    bad = subprocess.run([sys.executable, "-m", "quotacache", "stats", "--url",
                          "http://127.0.0.1:1"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 5 and "cannot reach" in bad.stderr
    assert len(bad.stderr.splitlines()) == 1 and "http://127.0.0.1:1" in bad.stderr
