"""Property tests: random DAGs with random failure patterns end in consistent final states.

Hypothesis draws the graph, trigger rules, optional flags and which steps fail; the engine runs it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from podium.bus import open_bus
from podium.engine.engine import Engine
from podium.engine.rules import DONE, Gate, trigger_gate
from podium.engine.summary import RunSummary
from podium.model.workflow import Workflow
from podium.settings import Settings
from podium.store import open_store

RULES = ["all_success", "all_done", "one_success", "one_failed", "none_failed"]


@st.composite
def workflows(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 7))
    steps: dict[str, Any] = {}
    for i in range(n):
        needs = draw(st.lists(st.sampled_from(range(i)), unique=True, max_size=3)) if i else []
        fails = draw(st.booleans())
        step: dict[str, Any] = {
            "kind": "sim",
            "needs": [f"s{j}" for j in needs],
            "trigger": draw(st.sampled_from(RULES)),
            "optional": draw(st.booleans()),
            "fail_times": 9 if fails else 0,
            "retry": {"attempts": draw(st.integers(1, 2)), "backoff": "1ms"},
        }
        if fails and draw(st.booleans()):
            step["fallback"] = {
                "kind": "sim",
                "output": "fb",
                "fail_times": draw(st.sampled_from([0, 9])),
            }
        if draw(st.booleans()):
            step["compensate"] = {"kind": "sim", "fail_times": draw(st.sampled_from([0, 0, 9]))}
        steps[f"s{i}"] = step
    return {"name": "prop", "steps": steps}


def _check_consistency(wf: Workflow, summary: RunSummary) -> None:
    statuses = {k: v.status for k, v in summary.steps.items()}
    assert all(s in DONE for s in statuses.values()), statuses
    hard_failure = any(statuses[k] == "failed" and not wf.steps[k].optional for k in statuses)
    compensated = [k for k, s in statuses.items() if s == "compensated"]
    comp_failed = [k for k, v in summary.steps.items() if v.compensation_error]
    if not hard_failure:
        # Without a stop, every step's fate is exactly what its trigger rule says.
        for step_id, step in wf.steps.items():
            gate = trigger_gate(step.trigger, [statuses[n] for n in step.needs])
            ran = statuses[step_id] in ("succeeded", "failed")
            assert (gate is Gate.READY) == ran, (step_id, gate, statuses)
        assert not compensated and not comp_failed
        degraded = any(s == "failed" for s in statuses.values()) or any(
            v.fallback_used for v in summary.steps.values()
        )
        assert summary.status == ("degraded" if degraded else "succeeded")
        return
    assert summary.status in ("failed", "compensated")
    assert summary.status == ("compensated" if compensated and not comp_failed else "failed")
    for step_id in compensated + comp_failed:
        assert wf.steps[step_id].compensate is not None
    for step_id, v in summary.steps.items():
        if v.status == "succeeded" and wf.steps[step_id].compensate is not None:
            assert v.compensation_error, f"{step_id} succeeded but was not compensated"


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(definition=workflows())
def test_every_run_ends_in_a_final_status_consistent_with_the_rules(
    tmp_path: Path, definition: dict[str, Any]
) -> None:
    wf = Workflow.model_validate(definition)

    async def run() -> RunSummary:
        url = f"sqlite:///{tmp_path / 'prop.db'}"
        async with (
            open_store(url) as store,
            open_bus() as bus,
            Engine(store, bus, Settings(poll_interval_s=0.05)) as engine,
        ):
            return await asyncio.wait_for(engine.run(wf), 20)

    _check_consistency(wf, asyncio.run(run()))
