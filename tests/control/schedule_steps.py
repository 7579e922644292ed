"""Step bodies and helpers for the schedule tests: a counter of step executions per run.

`RAN` is reset by each test; engines in one test process share it, so a tick run twice shows.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from podium.control.schedules import Spec, first_fire
from podium.events import new_id
from podium.model.workflow import Workflow
from podium.steps import StepContext
from podium.store.schedules import Schedule

RAN: Counter[str] = Counter()


async def count(ctx: StepContext) -> dict[str, str]:
    RAN[ctx.run_id] += 1
    return {"run": ctx.run_id}


def counted_workflow(name: str = "ticked") -> Workflow:
    return Workflow.model_validate(
        {
            "name": name,
            "inputs": {"n": {"type": "integer", "default": 1}},
            "steps": {"tick": {"kind": "python", "call": "schedule_steps:count"}},
        }
    )


def make_schedule(
    spec: Spec,
    *,
    name: str = "every-tick",
    next_at: float | None = None,
    workflow: Workflow | None = None,
    inputs: dict[str, Any] | None = None,
) -> Schedule:
    """A schedule as `podium schedule add` would store it; `next_at` may be set in the past."""
    now = time.time()
    workflow = workflow or counted_workflow()
    return Schedule(
        schedule_id=new_id(), name=name, workflow=workflow.name, definition=workflow.to_json(),
        inputs=inputs if inputs is not None else {"n": 1}, kind=spec.kind, spec=spec.text,
        timezone=spec.timezone, next_at=first_fire(spec, now) if next_at is None else next_at,
        created_at=now,
    )
