"""/openapi.json matches the routes the worker serves, and fuzzing it finds no 5xx."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

#: Below pytest's own timeout (300 s), so a run that hangs shows what it was doing.
SCHEMATHESIS_TIMEOUT = 200
#: Bounds a fuzzed read's wait (a wait nothing ends outlasts the request timeout).
HOOKS = Path(__file__).with_name("schemathesis_hooks.py")


def test_openapi_matches_the_views_and_schemathesis_finds_no_server_error_or_bad_answer(deployment):
    worker = deployment.start_worker()
    spec = worker.get("/openapi.json").json()
    documented = {(path, method.upper()) for path, ops in spec["paths"].items()
                  for method in ops}
    from quotacache.app import build_app

    served = set()
    for route in build_app(deployment.settings).app.web.web_app.router.routes():
        path = re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", route.resource.canonical)
        if route.method in ("GET", "POST", "DELETE") and not path.startswith("/router") \
                and not path.startswith("/table"):
            served.add((path, route.method))
    assert documented == served

    # A seed of our own, printed on failure: a run that went wrong can be replayed.
    seed = random.randrange(2**32)
    try:
        run = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "run", f"{worker.url}/openapi.json",
             "--checks", "not_a_server_error,response_schema_conformance",
             "--max-examples", "25", "--request-timeout", "20", "--seed", str(seed),
             "--phases", "examples,coverage,fuzzing",
             # An event stream never ends; test_client.py covers it and its 4xx answers.
             "--exclude-path", "/events", "--exclude-path", "/dashboard/events"],
            env={**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS)},
            capture_output=True, text=True, timeout=SCHEMATHESIS_TIMEOUT)
    except subprocess.TimeoutExpired as exc:  # about 10 s alone; once 300 s+ in CI
        printed = exc.stdout.decode(errors="replace") if exc.stdout else ""
        log = (deployment.tmp_path / "w1.log").read_text(errors="replace")
        pytest.fail(f"schemathesis (seed {seed}) still running after {SCHEMATHESIS_TIMEOUT} s"
                    f"\n--- its output ---\n{printed[-3000:]}\n--- the worker's log ---\n"
                    f"{log[-3000:]}")
    assert run.returncode == 0, f"seed {seed}\n" + run.stdout[-3000:]
    print("\nschemathesis:", " ".join(run.stdout.split()[-40:]))
    assert worker.child.alive()
