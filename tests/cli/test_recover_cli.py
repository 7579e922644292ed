"""`podium recover` tells the truth: a `podium run` killed with SIGKILL is recovered at once,
and runs held by live processes are named with their holder and lease, not "nothing to do".
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from cli_support import Podium

APPROVAL = """
name: approval
steps:
  draft: {kind: sim, output: {text: hello}}
  approve:
    needs: [draft]
    kind: wait
    signal: approve
    timeout: 1h
    retry: {attempts: 1}
  publish: {kind: sim, needs: [approve], output: {done: true}}
"""
QUEUED = re.compile(r"^run (\S+) queued$")


@pytest.fixture
def podium(tmp_path: Path) -> Podium:
    return Podium(tmp_path / "p.db", tmp_path)


def queued_id(running: subprocess.Popen[str]) -> str:
    """The id `podium run` prints on stderr as soon as it submitted, without a terminal."""
    assert running.stderr is not None
    for _ in range(50):
        line = running.stderr.readline()
        if not line:
            break
        match = QUEUED.match(line.strip())
        if match:
            return match.group(1)
    raise AssertionError("`podium run` printed no `run <id> queued` line")


def test_a_run_killed_with_sigkill_is_recovered_at_once_and_finishes(podium: Podium) -> None:
    path = podium.write("approval.yaml", APPROVAL)
    running = podium.start("run", str(path))
    try:
        run_id = queued_id(running)
        assert podium.wait_for_running("approve") == run_id

        held = podium("recover", run_id)
        assert held.code == 1
        assert f"run {run_id} not recovered: held by the live process" in held.stderr
        assert f":{running.pid}:" in held.stderr and "until 20" in held.stderr

        unnamed = podium("recover")
        assert unnamed.code == 0
        assert "1 unfinished run held by live processes" in unnamed.stderr
    finally:
        running.kill()
        running.communicate()

    # The lease (30 s) is far from over: only knowing the holder died lets this through.
    sent = podium("signal", run_id, "approve", '{"ok": true}')
    assert sent.code == 0, sent.stderr
    recovered = podium("recover", run_id, "--json")
    assert recovered.code == 0, recovered.stderr
    [summary] = recovered.json()
    assert summary["run_id"] == run_id
    assert summary["status"] == "succeeded"
    assert summary["outputs"]["publish"] == {"done": True}

    nothing = podium("recover")
    assert nothing.code == 0
    assert "nothing to recover: no unfinished runs" in nothing.stderr


def test_recovering_a_run_that_already_ended_exits_1_and_says_so(podium: Podium) -> None:
    path = podium.write("quick.yaml", "name: quick\nsteps:\n  a: {kind: sim}\n")
    done = podium("run", str(path), "--json")
    run_id = done.json()["run_id"]
    result = podium("recover", run_id)
    assert result.code == 1
    assert f"run {run_id} not recovered: it already ended (succeeded)" in result.stderr
