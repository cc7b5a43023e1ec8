"""/openapi.json matches the routes the worker serves, and fuzzing it finds no 5xx."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


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

    run = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", f"{worker.url}/openapi.json",
         "--checks", "not_a_server_error,response_schema_conformance",
         "--max-examples", "25", "--request-timeout", "20",
         "--phases", "examples,coverage,fuzzing",
         # An event stream never ends; test_client.py covers it and its 4xx answers.
         "--exclude-path", "/events", "--exclude-path", "/dashboard/events"],
        capture_output=True, text=True, timeout=400)
    assert run.returncode == 0, run.stdout[-3000:]
    print("\nschemathesis:", " ".join(run.stdout.split()[-40:]))
    assert worker.child.alive()
