"""`podium validate/plan/run module:workflow`: a Python definition works wherever a file does.

Every failure to load one is a single `error:` line and exit 2, never a traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parents[1] / "examples"


def podium(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PODIUM_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", "podium.cli.app", *args], capture_output=True, text=True,
        env=env, cwd=cwd, timeout=90, stdin=subprocess.DEVNULL,
    )
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    return proc


def test_validate_and_plan_take_a_module_reference(tmp_path: Path) -> None:
    valid = podium("validate", "sdk_flows:sums", cwd=tmp_path)
    assert (valid.returncode, valid.stdout.strip()) == (0, "sdk_flows:sums: valid (3 steps)")
    plan = json.loads(podium("plan", "sdk_flows:sums", "--json", cwd=tmp_path).stdout)
    assert plan["order"] == ["fetch", "double", "total"]


def test_run_takes_a_python_file_and_its_workflow(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'sdk-cli.db'}"
    proc = podium("run", "python/etl.py:etl", "-i", "batch=3", "--json", "--store", store,
                  cwd=EXAMPLES)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert (summary["workflow"], summary["status"]) == ("etl-orders", "succeeded")
    assert summary["outputs"]["load"]["rows"] == 3


@pytest.mark.parametrize(("target", "message"), [
    ("no_such_module_sdk:wf",
     "error: no_such_module_sdk:wf: cannot import no_such_module_sdk: ModuleNotFoundError:"
     " No module named 'no_such_module_sdk'"),
    ("sdk_flows:missing", "error: sdk_flows:missing: module has no attribute 'missing'"),
    ("sdk_flows:not_a_workflow",
     "error: sdk_flows:not_a_workflow is a function, not a workflow (a @podium.sdk.workflow"
     " function or a podium.Workflow)"),
    ("sdk_flows:twice",
     "error: sdk_flows:twice: steps.same: the id is used twice; give the second step another"
     " (e.g. .options(id=...))"),
    ("sdk_flows:branching",
     "error: sdk_flows:branching: TypeError: {{ steps.flag.output.go }} is only known when the"
     " workflow runs: a Python `if` cannot test it; give the step when=... instead"),
    ("gone.py:wf", "error: gone.py:wf: no such file gone.py"),
])
def test_a_module_that_cannot_give_a_workflow_is_one_line_and_exit_2(
    tmp_path: Path, target: str, message: str
) -> None:
    proc = podium("validate", target, cwd=tmp_path)
    assert (proc.returncode, proc.stderr.strip()) == (2, message)


def test_model_problems_of_a_python_definition_are_listed_one_per_line(tmp_path: Path) -> None:
    proc = podium("validate", "sdk_flows:invalid", cwd=tmp_path)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2
    assert len(lines) == 2
    assert all(line.startswith("error: sdk_flows:invalid: steps.") for line in lines)
