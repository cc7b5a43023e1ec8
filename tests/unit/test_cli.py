"""The command line's errors without a worker: every one is a single line on stderr naming
the bad value, with the documented exit code, and never a traceback.

Every case runs ``quotacache.cli.main`` in this process (fast: the whole matrix), and a
representative set runs ``python -m quotacache`` as a subprocess. A stub HTTP server
stands in for a worker that answers 4xx, 5xx, 503 or something that is not JSON.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from quotacache.cli import EXIT_MEANINGS, Exit, exit_codes_text, main, one_line
from quotacache.dev.broker import free_port

README = Path(__file__).resolve().parents[2] / "README.md"


def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("QUOTACACHE_") and k != "COLUMNS"}
    return subprocess.run([sys.executable, "-m", "quotacache", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd, env={**clean, **(env or {})})


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith("QUOTACACHE_"):
            monkeypatch.delenv(name)


@pytest.fixture
def call(capsys):
    """Run ``main(args)`` here; the outcome as a CompletedProcess, like ``run``."""
    def call(*args: str) -> subprocess.CompletedProcess[str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, out, err)

    return call


def assert_error(result: subprocess.CompletedProcess[str], code: Exit, *named: str) -> str:
    """One line on stderr naming each of ``named``, exit ``code``, no traceback anywhere."""
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert result.returncode == code, (result.returncode, result.stderr)
    assert lines[0].startswith("quotacache"), lines[0]
    for name in named:
        assert name in lines[0], (name, lines[0])
    return lines[0]


@pytest.fixture
def configs(tmp_path: Path) -> dict[str, Path]:
    """Config files: good ones (broker and worker where nothing listens), and bad ones."""
    nothing = free_port()
    files = {
        "good": f'[broker]\nurl = "kafka://127.0.0.1:{nothing}"\n[web]\nport = {nothing}\n',
        "not_toml": "app_id = \n",
        "bad_limit": '[services.cryptometer]\nlimits = ["100 per minute"]\n',
        "bad_port": '[web]\nport = 0\n',
        "bad_profile": 'profiles = ["nosuchprofile"]\n',
        "bad_broker": '[broker]\nurl = "http://somewhere:9092"\n',
    }
    paths = {}
    for name, text in files.items():
        paths[name] = tmp_path / f"{name}.toml"
        paths[name].write_text(text)
    paths["missing"] = tmp_path / "missing.toml"
    paths["directory"] = tmp_path
    return paths


# -- bad input: exit 2, before anything is sent ----------------------------------------------

BAD_INPUT = [
    (["request", "cryptometer", "ticker", "BAD SYM"], ["'BAD SYM'", "symbol"]),
    (["request", "nosuch", "ticker", "BTC"], ["'nosuch'", "unknown service"]),
    (["request", "cryptometer", "nosuch", "BTC"], ["'nosuch'", "unknown endpoint"]),
    (["request", "cryptometer", "ticker"], ["cryptometer/ticker", "needs a symbol"]),
    (["request", "cryptometer", "ticker", "BTC", "--priority", "urgent"], ["'urgent'"]),
    (["get", "cryptometer", "ticker", "BTC/../../x"], ["'BTC/../../x'"]),
    (["get", "../admin", "ticker", "BTC"], ["'../admin'"]),
    (["get", "cryptometer", "ticker", "BTC", "--url", "localhost:6066"], ["'localhost:6066'"]),
    (["batch", "BTC,BAD SYM", "cryptometer/ticker"], ["'BAD SYM'"]),
    (["batch", "BTC", "cryptometer"], ["'cryptometer'", "SERVICE/ENDPOINT"]),
    (["batch", "BTC", "cryptometer/ticker", "--priority", "top"], ["'top'"]),
    (["symbols", "add"], ["SYMBOLS"]),
    (["symbols", "add", "BTC,,ETH"], ["invalid symbol ''"]),
    (["symbols", "add", "BTC", "--endpoints", "ticker"], ["'ticker'"]),
    (["symbols", "drop", "BTC"], ["'drop'"]),
    (["strategy", "cryptometer", "FAST"], ["'FAST'", "AGGRESSIVE"]),
    (["stats", "--bogus"], ["--bogus"]),
    (["stats", "extra"], ["extra"]),
    (["watch", "--interval", "0"], ["'0'", "--interval"]),
    (["watch", "--count", "many"], ["'many'", "--count"]),
    (["demo", "--rate", "0"], ["'0'", "--rate"]),
    (["demo", "--duration", "soon"], ["'soon'", "--duration"]),
    (["demo", "--web-port", "70000"], ["'70000'", "--web-port"]),
    (["demo", "--symbols", "BTC,B!"], ["'B!'"]),
    (["upstream-sim", "--port", "http"], ["'http'", "--port"]),
    (["upstream-sim", "--latency", "0.5-0.1"], ["'0.5-0.1'"]),
    (["worker", "--bogus"], ["--bogus"]),
    (["worker", "--web-port", "abc"], ["'abc'", "--web-port"]),
    (["worker", "-l", "loud"], ["'loud'"]),
    (["nosuchcommand"], ["'nosuchcommand'"]),
    ([], ["command"]),
]


@pytest.mark.parametrize("args,named", BAD_INPUT, ids=[" ".join(a) or "none" for a, _ in BAD_INPUT])
def test_bad_input_is_one_line_naming_it_with_exit_2(args, named, configs, call):
    assert_error(call(*args, "--config", str(configs["good"])) if args else call(),
                 Exit.USAGE, *named)


# -- the configuration: exit 6, for every command that reads it ------------------------------

CONFIG_CASES = [
    ("missing", ["missing.toml", "not found"]),
    ("directory", ["cannot read"]),
    ("not_toml", ["not_toml.toml", "not valid TOML"]),
    ("bad_limit", ["services.cryptometer.limits.0", "'100 per minute'"]),
    ("bad_port", ["web.port"]),
    ("bad_profile", ["'nosuchprofile'"]),
    ("bad_broker", ["broker.url"]),
]
COMMANDS = [["worker"], ["request", "cryptometer", "ticker", "BTC"],
            ["get", "cryptometer", "ticker", "BTC"], ["stats"], ["watch", "--count", "1"],
            ["batch", "BTC", "cryptometer/ticker"], ["symbols", "list"],
            ["strategy", "cryptometer", "release"]]


@pytest.mark.parametrize("config,named", CONFIG_CASES, ids=[c for c, _ in CONFIG_CASES])
def test_a_bad_configuration_is_one_line_naming_the_key_with_exit_6(config, named, configs,
                                                                   call):
    for command in COMMANDS:
        assert_error(call(*command, "--config", str(configs[config])), Exit.CONFIG, *named)


def test_the_configuration_may_come_first_or_from_the_environment(configs, call,
                                                                 monkeypatch):
    assert_error(call("--config", str(configs["missing"]), "stats"), Exit.CONFIG,
                 "missing.toml")
    monkeypatch.setenv("QUOTACACHE_CONFIG", str(configs["bad_limit"]))
    assert_error(call("stats"), Exit.CONFIG, "'100 per minute'")
    monkeypatch.delenv("QUOTACACHE_CONFIG")
    monkeypatch.setenv("QUOTACACHE_WEB__PORT", "0")
    assert_error(call("stats"), Exit.CONFIG, "web.port")


# -- nothing answers: exit 5 -----------------------------------------------------------------

def test_an_unreachable_worker_or_broker_is_one_line_naming_it_with_exit_5(configs, call):
    url = f"http://127.0.0.1:{free_port()}"
    for command in (["get", "cryptometer", "ticker", "BTC"], ["stats"],
                    ["watch", "--count", "1"], ["batch", "BTC", "cryptometer/ticker"],
                    ["symbols", "add", "BTC"], ["strategy", "cryptometer", "MINIMAL"]):
        assert_error(call(*command, "--url", url), Exit.UNREACHABLE, "cannot reach", url)
    good = str(configs["good"])
    worker = "http://127.0.0.1:" + re.search(r"port = (\d+)", configs["good"].read_text())[1]
    assert_error(call("stats", "--config", good), Exit.UNREACHABLE, worker)
    broker = re.search(r"kafka://([\d.:]+)", configs["good"].read_text())[1]
    for command in (["request", "cryptometer", "ticker", "BTC"], ["worker"]):
        assert_error(call(*command, "--config", good), Exit.UNREACHABLE,
                     "cannot reach the broker", broker)


# -- a worker that refuses: exit 4 ------------------------------------------------------------

#: path -> (status, content type, body, extra headers) of the stub worker.
ANSWERS = {
    "/cache/nosuch/ticker/BTC": (404, "application/json",
                                 {"error": "unknown service 'nosuch'", "status": 404}, {}),
    "/stats": (503, "application/json", {"error": "not ready", "status": 503}, {}),
    "/dashboard/snapshot": (502, "text/html", "<html><h1>502 Bad Gateway</h1></html>", {}),
    "/batch": (429, "application/json", {"error": "too many requests", "status": 429},
               {"Retry-After": "3"}),
    "/strategy": (401, "application/json",
                  {"error": "missing or wrong token", "status": 401}, {}),
    "/symbols": (200, "text/html", "<html>not a worker</html>", {}),
    # JSON objects, but not a worker's (served under --url .../odd).
    "/odd/stats": (200, "application/json", {"workers": ["ok"], "endpoints": 3}, {}),
    "/odd/dashboard/snapshot": (200, "application/json", {"stats": {}, "services": 7}, {}),
    # Shaped like a worker's, but a value no table can show, and markup in a name.
    "/odder/dashboard/snapshot": (200, "application/json", {"stats": {}, "services": {
        "svc": {"limits": [], "strategy": "NORMAL", "strategy_pinned": False,
                "breaker": 7, "budget_use": 0.5}}}, {}),
    "/odder/stats": (200, "application/json", {"endpoints": {"svc/[/bold]": {}}}, {}),
}


@pytest.fixture
def stub_worker() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def answer(self) -> None:
            status, kind, body, headers = ANSWERS.get(
                self.path.split("?")[0], (500, "application/json",
                                          {"error": "internal", "status": 500}, {}))
            data = (json.dumps(body) if kind == "application/json" else body).encode()
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("command,named", [
    (["get", "nosuch", "ticker", "BTC"], ["'nosuch'", "HTTP 404"]),
    (["get", "cryptometer", "ticker", "BTC"], ["internal", "HTTP 500"]),
    (["stats"], ["not ready", "HTTP 503"]),
    (["watch", "--count", "1"], ["502 Bad Gateway", "HTTP 502"]),
    (["batch", "BTC", "cryptometer/ticker"], ["too many requests", "HTTP 429", "retry after 3"]),
    (["strategy", "cryptometer", "MINIMAL"], ["missing or wrong token", "HTTP 401"]),
    (["symbols", "list"], ["not a JSON object"]),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_a_refusing_worker_is_one_line_with_its_message_and_exit_4(command, named,
                                                                   stub_worker, call):
    assert_error(call(*command, "--url", stub_worker), Exit.REFUSED, stub_worker, *named)


def test_a_json_answer_of_the_wrong_shape_is_one_line_with_exit_4(stub_worker, call):
    for odd in (stub_worker + "/odd", stub_worker + "/odder"):
        for command in (["stats"], ["watch", "--count", "1"]):
            assert_error(call(*command, "--url", odd), Exit.REFUSED, stub_worker,
                         "not what a quotacache worker sends")


# -- the same, as processes ---------------------------------------------------------------------

def test_as_processes_every_kind_of_error_is_one_line_with_its_exit_code(configs, stub_worker):
    """A sample of the cases above through ``python -m quotacache``: what a shell sees."""
    nothing = f"http://127.0.0.1:{free_port()}"
    cases = [
        (["request", "cryptometer", "ticker", "BAD SYM"], Exit.USAGE, ["'BAD SYM'"]),
        (["worker", "--bogus"], Exit.USAGE, ["--bogus"]),
        (["demo", "--rate", "0"], Exit.USAGE, ["--rate"]),
        ([], Exit.USAGE, ["command"]),
        (["stats", "--config", str(configs["missing"])], Exit.CONFIG, ["missing.toml"]),
        (["worker", "--config", str(configs["bad_limit"])], Exit.CONFIG,
         ["services.cryptometer.limits.0"]),
        (["request", "cryptometer", "ticker", "BTC", "--config", str(configs["good"])],
         Exit.UNREACHABLE, ["cannot reach the broker"]),
        (["stats", "--url", nothing], Exit.UNREACHABLE, [nothing]),
        (["get", "nosuch", "ticker", "BTC", "--url", stub_worker], Exit.REFUSED,
         ["'nosuch'", "HTTP 404"]),
    ]
    for args, code, named in cases:
        assert_error(run(*args), code, *named)


# -- other failures ----------------------------------------------------------------------------

def test_a_taken_port_is_one_line_with_exit_1():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = run("upstream-sim", "--port", port, timeout=30)
    assert_error(result, Exit.FAILED, f"127.0.0.1:{port}", "cannot listen")


def test_worker_help_is_fausts_and_starts_nothing():
    result = run("worker", "--help")
    assert result.returncode == 0 and "--web-port" in result.stdout and not result.stderr


# -- the exit codes are documented once --------------------------------------------------------

def normalized(text: str) -> str:
    return " ".join(text.split())


def test_exit_codes_are_in_the_help_epilog_and_the_readme():
    result = run("--help")
    assert result.returncode == 0
    help_text = normalized(result.stdout)
    assert normalized(exit_codes_text()) in help_text
    readme = README.read_text()
    section = readme[readme.index("## Command line"):]
    section = normalized(section[:section.index("\n## ", 3)])
    for code, meaning in EXIT_MEANINGS.items():
        assert f"{int(code)} {normalized(meaning)}" in help_text, code
        assert f"| {int(code)} | {normalized(meaning)} |" in section, code
    assert set(EXIT_MEANINGS) == set(Exit)


def test_one_line_joins_the_keys_of_a_configuration_error():
    assert one_line("invalid configuration (x.toml):\n  a.b: bad\n  c: worse") == \
        "invalid configuration (x.toml): a.b: bad; c: worse"
    assert one_line("plain") == "plain"


def test_an_unexpected_error_is_one_line_too(monkeypatch, capsys):
    import quotacache.cli.commands as cli

    def boom(args, extra):
        raise RuntimeError("something\nbroke")

    monkeypatch.setattr(cli, "cmd_stats", boom)
    monkeypatch.delenv("QUOTACACHE_DEBUG", raising=False)
    assert main(["stats"]) == Exit.FAILED
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RuntimeError: something; broke" in err
    assert "Traceback" not in err
    monkeypatch.setenv("QUOTACACHE_DEBUG", "1")
    assert main(["stats"]) == Exit.FAILED
    assert "Traceback" in capsys.readouterr().err
