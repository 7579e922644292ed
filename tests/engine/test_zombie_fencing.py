"""Fencing: an engine paused past its lease (SIGSTOP) cannot commit a late result.

Another engine takes the run over and finishes it; the zombie's write is dropped by the store.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from podium.store import codec, open_store

HERE = Path(__file__).parent


def _spawn(db: Path, effects: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CRASH_EFFECTS": str(effects),
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(
        [sys.executable, str(HERE / "crash_driver.py"), str(db), *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def _wait_for_lines(path: Path, count: int, timeout_s: float = 20) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count:
            return lines
        time.sleep(0.02)
    raise AssertionError(f"expected {count} step executions in {path}")


def test_a_paused_engine_past_its_lease_cannot_commit_its_late_result(tmp_path: Path) -> None:
    db, effects = tmp_path / "zombie.db", tmp_path / "effects.log"
    zombie = _spawn(db, effects, "zombie", "1")
    try:
        _wait_for_lines(effects, 1)  # the zombie started the step body...
        zombie.send_signal(signal.SIGSTOP)  # ...and freezes past its 0.3 s lease:
        rescuer = _spawn(db, effects, "recover")  # which the rescuer polls until it ran out
        _, err = rescuer.communicate(timeout=60)
        assert rescuer.returncode == 0, err.decode()[-2000:]
    finally:
        zombie.send_signal(signal.SIGCONT)
    _, err = zombie.communicate(timeout=60)
    assert zombie.returncode == 0, err.decode()[-2000:]
    first, second = (line.split()[1] for line in _wait_for_lines(effects, 2))
    asyncio.run(_check(db, expected_nonce=second, zombie_nonce=first))


async def _check(db: Path, expected_nonce: str, zombie_nonce: str) -> None:
    async with open_store(f"sqlite:///{db}") as store:
        (run,) = await store.list_runs()
        assert run.status == "succeeded"
        (step,) = await store.get_steps(run.run_id)
        output = codec.decode(step.output_blob)
        assert output["nonce"] == expected_nonce != zombie_nonce
        completed = [
            e for _, e in await store.list_events(run.run_id)
            if e.event_type == "agent.task.completed"
        ]
        assert len(completed) == 1
