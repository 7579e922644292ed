"""`podium status RUN` shows a failed step's traceback (shortened); `--json` has it whole."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from cli_support import CLI, check_output, cli_env

from podium.bus import open_bus
from podium.engine.engine import Engine
from podium.model.workflow import Workflow
from podium.settings import Settings
from podium.store import open_store

TESTS = Path(__file__).parent.parent


def podium(*args: str) -> subprocess.CompletedProcess[str]:
    env = cli_env()
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env["PYTHONPATH"]])
    proc = subprocess.run(
        [*CLI, *args], capture_output=True, text=True, env=env, timeout=60,
        stdin=subprocess.DEVNULL,
    )
    check_output(proc.stdout, proc.stderr)
    return proc


async def failed_run(store_url: str) -> str:
    wf = Workflow.model_validate({"name": "orders", "steps": {"order": {
        "kind": "python", "call": "faillib:parse_order", "input": {"amount": "twelve"},
        "retry": {"attempts": 1},
    }}})
    async with (
        open_store(store_url) as store,
        open_bus("memory://") as bus,
        Engine(store, bus, Settings(poll_interval_s=0.02)) as engine,
    ):
        return (await engine.run(wf)).run_id


async def test_status_shows_the_type_and_traceback_of_a_failed_step(store_url: str) -> None:
    run_id = await failed_run(store_url)

    result = podium("status", run_id, "--json", "--store", store_url)
    assert result.returncode == 0, result.stderr
    step = json.loads(result.stdout)["steps"]["order"]
    assert step["error_type"] == "ValueError"
    assert "in _parse_amount" in step["traceback"] and "in parse_order" in step["traceback"]

    text = podium("status", run_id, "--store", store_url)
    assert text.returncode == 0, text.stderr
    assert "traceback: order (ValueError)" in text.stdout
    assert "_parse_amount" in text.stdout
    assert "could not convert string to float" in text.stdout


BROKEN_DUTY = """
name: broken-duty
steps:
  wait:
    kind: python
    call: faillib:break_control_upkeep
    timeout: 60s
    retry: {attempts: 1}
"""


def test_a_failing_background_duty_makes_run_exit_1_with_one_line(
    store_url: str, tmp_path: Path,
) -> None:
    definition = tmp_path / "broken.yaml"
    definition.write_text(BROKEN_DUTY)

    result = podium("run", str(definition), "--store", store_url)

    assert result.returncode == 1, (result.stdout, result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: the engine stopped: its background duty engine:tick-control failed with"
        " ZeroDivisionError: upkeep divided by zero; a restart recovers its runs"
    ]
    assert result.stderr.rstrip().endswith(errors[0])  # the last line says why
