"""Deadlock detection through the engine (control/deadlocks.py): two runs that each hold, through
a `workflow` step's `max_concurrent` key, the pool the other's child waits for; on both stores.
"""

from __future__ import annotations

from typing import Any

from clocklib import eventually, step_through

from podium.bus.base import Bus
from podium.clock import FakeClock
from podium.control.config import ControlConfig
from podium.engine.engine import Engine
from podium.model.workflow import Workflow
from podium.settings import Settings
from podium.store.base import Store
from podium.store.waits import child_run_id, step_key

CHECK_EVERY = 5.0
LOCK = {"agent": "locks"}  # one scope, so a `key` names the same pool in every workflow


def _slot(key: str) -> dict[str, Any]:
    return {**LOCK, "limits": {"max_concurrent": 1, "key": key}}


# The child waits for a signal before it asks for its slot: the test decides the order.
INNER: dict[str, Any] = {
    "name": "inner",
    "inputs": {"want": {}},
    "steps": {
        "gate": {"kind": "wait", "signal": "go"},
        "take": {"kind": "sim", "needs": ["gate"], **_slot("{{ inputs.want }}")},
    },
}
# Holds the slot of `mine` while its child runs, and the child wants the slot of `theirs`.
OUTER = Workflow.model_validate({
    "name": "outer",
    "inputs": {"mine": {}, "theirs": {}},
    "steps": {
        "hold": {
            "kind": "workflow", "workflow": "inner", "definition": INNER,
            "input": {"want": "{{ inputs.theirs }}"}, **_slot("{{ inputs.mine }}"),
        },
    },
})
WAITER = Workflow.model_validate(
    {"name": "waiter", "steps": {"forever": {"kind": "wait", "signal": "nobody-sends-this"}}}
)


def _settings() -> Settings:
    return Settings(
        poll_interval_s=1.0, lease_s=30, store_retry_s=0.5,
        control=ControlConfig(deadlock={"check_every": CHECK_EVERY}),  # type: ignore[arg-type]
    )


def _child(run_id: str) -> str:
    return child_run_id(step_key(run_id, "hold", -1))


async def _step_running(engine: Engine, run_id: str, step: str) -> bool:
    steps = await engine.store.get_steps(run_id)
    return any(s.step_id == step and s.status == "running" for s in steps)


def _slot_waiters(engine: Engine) -> int:
    return len(engine.control.waits.waits)


async def _start_two_crossed_runs(engine: Engine, clock: FakeClock) -> tuple[str, str]:
    """a holds k1 and its child waits for k2; then b holds k2 and its child waits for k1."""
    a = await engine.submit(OUTER, {"mine": "k1", "theirs": "k2"})
    b = await engine.submit(OUTER, {"mine": "k2", "theirs": "k1"})
    for run_id in (a, b):
        await eventually(lambda r=run_id: _step_running(engine, _child(r), "gate"))
    await engine.signal(_child(a), "go")
    await eventually(lambda: _slot_waiters(engine) == 1)
    clock.advance(1.0)  # b's child starts waiting later: the youngest waiter
    await engine.signal(_child(b), "go")
    await eventually(lambda: _slot_waiters(engine) == 2)
    return a, b


async def _finished(engine: Engine, clock: FakeClock, run_ids: list[str]) -> bool:
    clock.advance(0.5)  # time moves on: checks come round
    rows = [await engine.store.get_run(r) for r in run_ids]
    return all(row is not None and row.done for row in rows)


async def test_a_cycle_fails_its_youngest_waiter_and_the_rest_completes(
    clocked_store: Store, clock: FakeClock, bus: Bus
) -> None:
    async with Engine(clocked_store, bus, _settings()) as engine:
        a, b = await _start_two_crossed_runs(engine, clock)
        everyone = [a, b, _child(a), _child(b)]
        await eventually(lambda: _finished(engine, clock, everyone))
        older, victim = await engine.summary(_child(a)), await engine.summary(_child(b))
        first, second = await engine.summary(a), await engine.summary(b)
        events = [e for _, e in await clocked_store.list_events(_child(b))]
        broken = engine.control.deadlocks.broken
        await eventually(lambda: not engine.active_runs())
        left = engine.control.waits.records()
    assert (first.status, older.status) == ("succeeded", "succeeded")
    assert (second.status, victim.status) == ("failed", "failed")
    error = victim.steps["take"].error or ""
    assert error.startswith(f"deadlock: run {_child(b)} (inner, step take) waits for pool")
    assert '"agent:locks[k1]" held by run ' + a in error
    assert f'"agent:locks[k2]" held by run {b} (outer, step hold)' in error
    assert error.endswith(f"failed the youngest waiter (run {_child(b)}, step take)")
    assert victim.steps["take"].error_type == "DeadlockDetected"
    detected = [e for e in events if e.event_type == "system.deadlock.detected"]
    assert len(detected) == 1
    assert detected[0].payload["victim"] == {
        "run_id": _child(b), "workflow": "inner", "step": "take"
    }
    assert {m["run_id"] for m in detected[0].payload["cycle"]} == set(everyone)
    assert broken == 1
    assert left == []


async def test_waits_that_are_no_cycle_are_never_touched(
    clocked_store: Store, clock: FakeClock, bus: Bus
) -> None:
    async with Engine(clocked_store, bus, _settings()) as engine:
        lonely = await engine.submit(WAITER)  # a signal nobody sends
        # `busy` holds k2 while its child waits for a signal; `blocked`'s child waits for k2
        busy = await engine.submit(OUTER, {"mine": "k2", "theirs": "k9"})
        blocked = await engine.submit(OUTER, {"mine": "k1", "theirs": "k2"})
        for run_id in (busy, blocked):
            await eventually(lambda r=run_id: _step_running(engine, _child(r), "gate"))
        await engine.signal(_child(blocked), "go")
        await eventually(lambda: _slot_waiters(engine) == 1)
        await step_through(clock, 6 * CHECK_EVERY, CHECK_EVERY / 2)  # six checks come round
        untouched = [(await engine.summary(r)).status for r in (lonely, busy, blocked)]
        broken = engine.control.deadlocks.broken
        await engine.signal(_child(busy), "go")  # now everything may finish
        await engine.signal(lonely, "nobody-sends-this")
        runs = [lonely, busy, blocked, _child(busy), _child(blocked)]
        await eventually(lambda: _finished(engine, clock, runs))
        statuses = [(await engine.summary(r)).status for r in runs]
        events = [e.event_type for _, e in await clocked_store.list_events()]
    assert untouched == ["running"] * 3
    assert broken == 0
    assert statuses == ["succeeded"] * 5
    assert "system.deadlock.detected" not in events
