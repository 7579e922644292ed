"""Durability: SIGKILL at random moments, restart, and check nothing is lost or repeated.

A real subprocess runs the engine; its python steps append 'key nonce' lines to a file.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from podium.model.status import RUN_FINAL
from podium.store import open_store

HERE = Path(__file__).parent
RUNS = 20
STEPS_PER_RUN = 10  # a, b, c, d, e and five `fan` instances


def _spawn(db: Path, effects: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CRASH_EFFECTS": str(effects),
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(
        [sys.executable, str(HERE / "crash_driver.py"), str(db), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _kill_at_random(proc: subprocess.Popen[bytes], rng: random.Random) -> None:
    """Kills within about the first second of work (interpreter start-up takes ~0.3 s)."""
    try:
        proc.wait(timeout=rng.uniform(0.3, 1.5))
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        proc.communicate()


@pytest.mark.slow  # a dozen real SIGKILLs and restarts
def test_sigkill_at_random_moments_loses_nothing_and_repeats_no_completed_step(
    tmp_path: Path,
) -> None:
    rng = random.Random(int(os.environ.get("CRASH_SEED", "7")))
    db, effects = tmp_path / "crash.db", tmp_path / "effects.log"
    first = _spawn(db, effects, "submit", str(RUNS))
    assert first.stdout is not None and first.stdout.readline() == b"submitted\n"
    _kill_at_random(first, rng)
    for _ in range(12):
        _kill_at_random(_spawn(db, effects, "recover"), rng)
    final = _spawn(db, effects, "recover")
    _, err = final.communicate(timeout=90)
    assert final.returncode == 0, err.decode()[-2000:]
    asyncio.run(_check(db, effects))


async def _check(db: Path, effects: Path) -> None:
    last_nonce: dict[str, str] = {}
    lines = effects.read_text().splitlines()
    for line in lines:
        key, nonce = line.split()
        last_nonce[key] = nonce
    async with open_store(f"sqlite:///{db}") as store:
        runs = await store.list_runs(limit=1000)
        print(f"runs {len(runs)}, step bodies run {len(lines)}, steps {len(last_nonce)}")
        assert runs, "the first process was killed before it submitted anything"
        assert all(r.status in RUN_FINAL for r in runs), [r.status for r in runs]
        assert all(r.status == "succeeded" for r in runs)
        completed: Counter[tuple[str, str, int]] = Counter()
        for _, event in await store.list_events(limit=1_000_000):
            if event.event_type == "agent.task.completed":
                p = event.payload
                completed[(event.correlation_id, p["step"], p["index"])] += 1
        for run in runs:
            steps = [
                s for s in await store.get_steps(run.run_id) if s.step_id != "fan" or s.index >= 0
            ]
            assert len(steps) == STEPS_PER_RUN
            for step in steps:
                key = f"{run.run_id}/{step.step_id}" + ("" if step.index < 0 else f"/{step.index}")
                # committed exactly once
                assert completed[(run.run_id, step.step_id, step.index)] == 1, key
                # the committed result is the body's last execution: none ran after the commit
                from podium.store import codec

                assert codec.decode(step.output_blob)["nonce"] == last_nonce[key], key
