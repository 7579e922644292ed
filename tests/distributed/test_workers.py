"""Worker processes: two drain a backlog, `podium workers` lists them, SIGTERM drains cleanly.

A run in flight at SIGTERM is finished by the draining worker (a drain long enough) or handed
back and finished by the other one (a drain too short): nothing is lost, nothing committed twice.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import cluster
import pytest

from podium.model.workflow import Workflow

RUNS = 100


def _workers_json(made: cluster.Cluster) -> list[dict[str, Any]]:
    done = subprocess.run(
        made.command("workers", "--json", "--store", made.store_url),
        env=made.process_env(), capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    listed: list[dict[str, Any]] = json.loads(done.stdout)
    return listed


def _states(made: cluster.Cluster) -> dict[int, str]:
    return {w["pid"]: w["state"] for w in _workers_json(made)}


async def _wait_for_states(made: cluster.Cluster, wanted: dict[int, str]) -> None:
    async with asyncio.timeout(30):
        while _states(made) != wanted:
            await asyncio.sleep(0.2)


async def _exit_code(proc: subprocess.Popen[bytes], timeout_s: float = 60) -> int:
    return await asyncio.wait_for(asyncio.to_thread(proc.wait), timeout_s)


@pytest.mark.timeout(120)
async def test_two_workers_drain_a_backlog_and_both_are_listed_alive(tmp_path: Path) -> None:
    with cluster.cluster(tmp_path, PODIUM_LEASE_S="2") as made:
        workflow = Workflow.model_validate(cluster.diamond("drain", made.effects, ms=5))
        first, second = made.spawn(concurrency=5), made.spawn(concurrency=5)
        async with cluster.submitter(made) as engine:
            ids = await asyncio.gather(*(engine.submit(workflow) for _ in range(RUNS)))
            await _wait_for_states(made, {first.pid: "running", second.pid: "running"})
            async with asyncio.timeout(90):
                await asyncio.gather(*(engine.wait_done(i) for i in ids))
            assert await cluster.statuses(engine.store) == {"succeeded": RUNS}
            proof = await cluster.prove_exactly_once(engine.store, made.effects, ids)
        assert proof.steps_committed == RUNS * 10
        ran_in = {e.pid for e in cluster.read_effects(made.effects)}
        assert ran_in == {first.pid, second.pid}  # both took their share
        listed = _workers_json(made)
        assert {w["pid"] for w in listed} == {first.pid, second.pid}
        assert all(w["state"] == "running" and w["concurrency"] == 5 for w in listed)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("drain_s", "finisher"), [("30", "the draining worker"), ("0.3", "the other worker")]
)
async def test_sigterm_drains_and_the_run_in_flight_is_finished(
    tmp_path: Path, drain_s: str, finisher: str
) -> None:
    gate = tmp_path / "gate"  # the step stays in flight until it exists
    with cluster.cluster(tmp_path, PODIUM_LEASE_S="2") as made:
        held = cluster.effect_step(made.effects, gate=str(gate))
        slow = Workflow.model_validate({"name": "in-flight", "steps": {"slow": held}})
        busy = made.spawn(2, "--drain", drain_s)
        async with cluster.submitter(made) as engine:
            run_id = await engine.submit(slow)
            (started,) = await cluster.wait_for_effects(made.effects, 1)
            assert started.pid == busy.pid
            other = made.spawn(2)
            await _wait_for_states(made, {busy.pid: "running", other.pid: "running"})
            in_flight = await engine.store.get_run(run_id)
            assert in_flight is not None and in_flight.status == "running"
            busy.send_signal(signal.SIGTERM)
            if finisher == "the draining worker":
                await _wait_for_states(made, {busy.pid: "draining", other.pid: "running"})
                gate.touch()  # the run ends within the drain
            assert await _exit_code(busy) == 0
            gate.touch()  # else the drain ran out first: the other worker's attempt ends
            async with asyncio.timeout(60):
                await engine.wait_done(run_id)
            summary = await engine.summary(run_id)
            await cluster.prove_exactly_once(engine.store, made.effects, [run_id])

        assert summary.status == "succeeded", summary.error
        effects = cluster.read_effects(made.effects)
        if finisher == "the draining worker":
            assert [e.pid for e in effects] == [busy.pid]  # it ran once, to the end
        else:
            assert [e.pid for e in effects] == [busy.pid, other.pid]  # handed back, run again
        assert _states(made) == {busy.pid: "stopped", other.pid: "running"}
