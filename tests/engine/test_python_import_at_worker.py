"""A python step whose module the worker cannot import fails at once (no retry: the path does
not change between attempts), naming the worker and where it looked; `podium worker --serves`
refuses to start without the modules it must serve."""

from __future__ import annotations

import subprocess
import sys

from podium.engine.engine import Engine
from podium.model.workflow import Workflow

MISSING = Workflow.model_validate({
    "name": "needs-a-module",
    "steps": {"work": {
        "kind": "python", "call": "newcomer_absent_pkg.tasks:work",
        "retry": {"attempts": 3, "backoff": "1ms"},
    }},
})


async def test_an_import_error_is_not_retried_and_names_the_worker_and_its_path(
    engine: Engine,
) -> None:
    summary = await engine.run(MISSING)  # built without `podium run`'s check, as a worker gets it
    step = summary.steps["work"]
    assert summary.status == "failed"
    assert step.attempts == 1
    error = step.error or ""
    assert "cannot import module 'newcomer_absent_pkg.tasks'" in error
    assert f"at worker {engine.owner}" in error
    assert "sys.path (" in error and "PYTHONPATH" in error


def test_a_worker_that_cannot_import_a_module_it_serves_does_not_start() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "podium.cli.app", "worker", "--serves", "json,newcomer_absent_pkg",
         "--store", "sqlite:///:memory:"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith(
        "error: --serves: cannot import module 'newcomer_absent_pkg' here: No module named"
    )
    assert "sys.path (" in proc.stderr
