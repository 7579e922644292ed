"""Fencing across worker processes: a worker SIGSTOPped past its lease while running a slow
step cannot commit its late result once another worker has taken the run over and finished it.
"""

from __future__ import annotations

import signal
from pathlib import Path

import cluster
import pytest

from podium.model.workflow import Workflow
from podium.store import codec

SLOW_MS = 1500  # the body sleeps this long after writing its side effect


@pytest.mark.timeout(120)
async def test_a_worker_paused_past_its_lease_cannot_commit_its_late_result(
    tmp_path: Path,
) -> None:
    with cluster.cluster(tmp_path, PODIUM_LEASE_S="1") as made:
        workflow = Workflow.model_validate(
            {"name": "zombie", "steps": {"slow": cluster.effect_step(made.effects, ms=SLOW_MS)}}
        )
        zombie = made.spawn(concurrency=4)
        async with cluster.submitter(made) as engine:
            run_id = await engine.submit(workflow)
            (first,) = await cluster.wait_for_effects(made.effects, 1)  # its body is sleeping...
            zombie.send_signal(signal.SIGSTOP)  # ...and the worker freezes past its 1 s lease
            try:
                assert first.pid == zombie.pid
                rescuer = made.spawn(concurrency=4)
                await engine.wait_done(run_id)  # the rescuer took the run over and finished it
                summary = await engine.summary(run_id)
            finally:
                zombie.send_signal(signal.SIGCONT)
            # The zombie's body wakes up late and returns; its commit is refused by the fence.
            await cluster.wait_for_log(made.workdir / "worker-1.log", "lost the lease of runs")
            assert zombie.poll() is None  # fenced, not crashed
            (step,) = await engine.store.get_steps(run_id)
            events = [e for _, e in await engine.store.list_events(run_id)]

        first, second = cluster.read_effects(made.effects)
        assert second.pid == rescuer.pid
        assert summary.status == "succeeded"
        assert codec.decode(step.output_blob)["nonce"] == second.nonce != first.nonce
        assert step.attempts == 2  # the takeover re-ran the interrupted attempt
        completed = [e for e in events if e.event_type == "agent.task.completed"]
        assert len(completed) == 1
        assert completed[0].payload["attempt"] == 2
