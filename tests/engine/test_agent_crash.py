"""SIGKILL in the middle of an agent loop, then recovery: the model is not asked again for a
turn it answered, and a tool call that completed before the crash does not run again.

A real subprocess runs the engine against a local model server in this process; the tools
append lines to a file. Turn 1 asks for `fast` and `slow` at once; the kill comes once `fast`
has completed (its child run committed) while `slow` is still running.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "steps"))
from fake_agents import running

from podium.store import codec, open_store

HERE = Path(__file__).parent
BOUND_S = 60.0  # bound on waiting for the subprocess to get somewhere; never an assertion


def _spawn(db: Path, url: str, effects: Path, gate: Path, mode: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CRASH_EFFECTS": str(effects),
        "CRASH_GATE": str(gate),
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(
        [sys.executable, str(HERE / "agent_crash_driver.py"), str(db), url, mode],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def _until(check: Callable[[], bool], what: str) -> None:
    end = time.monotonic() + BOUND_S
    while not check():
        if time.monotonic() > end:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.02)


def _lines(effects: Path) -> Counter[str]:
    return Counter(effects.read_text().splitlines()) if effects.exists() else Counter()


async def _children(db: Path, parent: str) -> list[str]:
    async with open_store(f"sqlite:///{db}") as store:
        runs = await store.list_runs(limit=100)
    return [r.status for r in runs if r.parent_run_id == parent]


def test_sigkill_mid_loop_then_recover_repeats_no_model_turn_and_no_completed_tool_call(
    tmp_path: Path,
) -> None:
    db, effects, gate = tmp_path / "agent.db", tmp_path / "effects.log", tmp_path / "gate"
    with running([["fast", "slow"], ["fast"]]) as model:
        first = _spawn(db, model.url, effects, gate, "submit")
        assert first.stdout is not None
        run_id = first.stdout.readline().decode().strip()
        _until(lambda: _lines(effects)["slow-start q1.1"] == 1, "the slow tool to start")
        _until(
            lambda: asyncio.run(_children(db, run_id)).count("succeeded") == 1,
            "the fast tool's child run to commit",
        )
        first.send_signal(signal.SIGKILL)
        first.communicate()
        gate.touch()
        final = _spawn(db, model.url, effects, gate, "recover")
        _, err = final.communicate(timeout=BOUND_S)
        assert final.returncode == 0, err.decode()[-2000:]
        turns = model.turns()
    lines = _lines(effects)
    assert lines["fast q1.0"] == 1  # completed before the kill: not run again
    assert lines["slow-start q1.1"] == 2  # in flight at the kill: runs again (at least once)
    assert lines["slow-done q1.1"] == 1
    assert lines["fast q2.0"] == 1
    assert turns == [1, 2, 3]  # turn 1 was answered before the kill: never asked again
    asyncio.run(_check_run(db, run_id))


async def _check_run(db: Path, run_id: str) -> None:
    async with open_store(f"sqlite:///{db}") as store:
        row = await store.get_run(run_id)
        assert row is not None and row.status == "succeeded"
        (step,) = await store.get_steps(run_id)
        output = codec.decode(step.output_blob)
        assert output["turns"] == 3
        assert [(c["turn"], c["name"]) for c in output["tool_calls"]] == [
            (1, "fast"), (1, "slow"), (2, "fast"),
        ]
        assert '"tool": "slow"' in output["text"]
