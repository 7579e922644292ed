"""A step waiting for a concurrency slot reads `ready`, not running: an event says it waits,
and its `started_at` is when it got the slot, not when it was queued for it."""

from __future__ import annotations

import asyncio

from clocklib import eventually

from podium.clock import FakeClock
from podium.engine.engine import Engine
from podium.model.workflow import Workflow

GATES: dict[str, asyncio.Event] = {}


async def gated(name: str) -> str:
    await GATES.setdefault(name, asyncio.Event()).wait()
    return name


def workflow() -> Workflow:
    return Workflow.model_validate({
        "name": "one-at-a-time",
        "inputs": {"gate": {"type": "string"}},
        "steps": {"work": {
            "kind": "python", "call": "test_slot_wait:gated",
            "input": {"name": "{{ inputs.gate }}"},
            "limits": {"max_concurrent": 1}, "retry": {"attempts": 1},
        }},
    })


async def test_a_step_waiting_for_a_slot_is_ready_with_an_event_then_starts_when_it_gets_it(
    clocked_engine: Engine, clock: FakeClock
) -> None:
    GATES.clear()
    engine, store = clocked_engine, clocked_engine.store
    first = await engine.submit(workflow(), {"gate": "first"})

    async def reads(run_id: str, status: str) -> bool:
        return any(s.status == status for s in await store.get_steps(run_id))

    await eventually(lambda: reads(first, "running"))
    queued_at = clock.now()
    second = await engine.submit(workflow(), {"gate": "second"})
    await eventually(lambda: reads(second, "ready"))
    waits = [
        e.payload for _, e in await store.list_events(second)
        if e.event_type == "agent.task.waiting"
    ]
    assert waits == [{"step": "work", "index": -1, "attempt": 1, "for": "slot"}]

    clock.advance(60)
    GATES["first"].set()
    await eventually(lambda: reads(second, "running"))
    GATES.setdefault("second", asyncio.Event()).set()
    summary = await engine.wait(second)
    assert summary.status == "succeeded"
    [step] = [s for s in await store.get_steps(second) if s.step_id == "work"]
    assert step.started_at is not None and step.started_at >= queued_at + 60
    assert (await engine.wait(first)).status == "succeeded"

