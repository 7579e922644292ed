"""The circuit breaker's store operations on both stores: each is one atomic transition.

Also the guard alone, with real Calls: refused and cancelled calls neither count nor keep slots.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from podium.clock import FakeClock
from podium.control.circuits import CircuitGuard, resolve_policy
from podium.control.config import AgentControl, Circuits, ControlConfig
from podium.control.guard import Call, pass_guard
from podium.errors import CircuitOpen
from podium.model.workflow import CircuitPolicy, Workflow
from podium.store.base import Store

KEY = "http:api.example:443"


async def test_failures_open_a_circuit_at_the_threshold(store: Store) -> None:
    results = [await store.circuit_failure(KEY, failures=3, cooldown_s=30) for _ in range(4)]
    assert [r.transition for r in results] == [None, None, "opened", None]
    [row] = await store.list_circuits()
    assert (row.key, row.state, row.failures, row.cooldown_s) == (KEY, "open", 4, 30.0)
    assert row.opened_at is not None and row.updated_at >= row.opened_at


async def test_a_success_resets_the_count_of_a_closed_circuit(store: Store) -> None:
    await store.circuit_failure(KEY, failures=3, cooldown_s=30)
    result = await store.circuit_success(KEY, successes=1, trial=False)
    assert result.transition is None and result.circuit is not None
    assert (result.circuit.state, result.circuit.failures) == ("closed", 0)
    assert (await store.circuit_success("never-seen", successes=1, trial=False)).circuit is None


async def test_an_open_circuit_half_opens_after_its_cool_down_and_lends_trial_slots(
    store: Store,
) -> None:
    await store.circuit_failure(KEY, failures=1, cooldown_s=30)
    early = await store.take_circuit_trial(KEY, cooldown_s=30, half_open_max=1, lease_s=60)
    assert not early.allowed and early.transition is None
    first = await store.take_circuit_trial(KEY, cooldown_s=0, half_open_max=1, lease_s=60)
    assert (first.allowed, first.trial, first.transition) == (True, True, "half_opened")
    busy = await store.take_circuit_trial(KEY, cooldown_s=0, half_open_max=1, lease_s=60)
    assert not busy.allowed
    released = await store.release_circuit_trial(KEY)
    assert released.circuit is not None and released.circuit.trials == 0
    again = await store.take_circuit_trial(KEY, cooldown_s=0, half_open_max=1, lease_s=60)
    assert again.allowed and again.trial and again.transition is None
    closed = await store.circuit_success(KEY, successes=1, trial=True)
    assert closed.transition == "closed" and closed.circuit is not None
    assert (closed.circuit.state, closed.circuit.trials, closed.circuit.failures) == (
        "closed", 0, 0,
    )


async def test_a_failure_while_half_open_reopens(store: Store) -> None:
    await store.circuit_failure(KEY, failures=1, cooldown_s=0)
    await store.take_circuit_trial(KEY, cooldown_s=0, half_open_max=1, lease_s=60)
    result = await store.circuit_failure(KEY, failures=5, cooldown_s=0)
    assert result.transition == "opened" and result.circuit is not None
    assert (result.circuit.state, result.circuit.trials) == ("open", 0)


async def test_trial_slots_held_past_their_lease_are_presumed_lost(
    clocked_store: Store, clock: FakeClock
) -> None:
    store = clocked_store
    await store.circuit_failure(KEY, failures=1, cooldown_s=0)
    await store.take_circuit_trial(KEY, cooldown_s=0, half_open_max=1, lease_s=0.5)
    clock.advance(0.5)  # the slot's holder "died": at its lease's end, still held
    held = await store.take_circuit_trial(KEY, cooldown_s=0, half_open_max=1, lease_s=60)
    assert not held.allowed
    clock.advance(0.25)
    result = await store.take_circuit_trial(KEY, cooldown_s=0, half_open_max=1, lease_s=60)
    assert result.allowed and result.circuit is not None and result.circuit.trials == 1


async def test_concurrent_trials_never_exceed_half_open_max(store: Store) -> None:
    await store.circuit_failure(KEY, failures=1, cooldown_s=0)
    results = await asyncio.gather(
        *(store.take_circuit_trial(KEY, cooldown_s=0, half_open_max=3, lease_s=60)
          for _ in range(12))
    )
    assert sum(r.allowed for r in results) == 3
    assert sum(r.transition == "half_opened" for r in results) == 1


async def test_concurrent_failures_are_all_counted(store: Store) -> None:
    results = await asyncio.gather(
        *(store.circuit_failure(KEY, failures=10, cooldown_s=1) for _ in range(15))
    )
    assert sum(r.transition == "opened" for r in results) == 1
    [row] = await store.list_circuits()
    assert row.failures == 15


async def test_an_operator_holds_a_circuit_open_until_they_close_it(store: Store) -> None:
    opened = await store.force_circuit(KEY, open_=True)
    assert opened.transition == "opened" and opened.circuit is not None and opened.circuit.forced
    assert (await store.force_circuit(KEY, open_=True)).transition is None  # already held
    held = await store.take_circuit_trial(KEY, cooldown_s=0, half_open_max=5, lease_s=60)
    assert not held.allowed  # no cool-down ends an operator's hold
    await store.circuit_failure(KEY, failures=1, cooldown_s=0)
    closed = await store.force_circuit(KEY, open_=False)
    assert closed.transition == "closed" and closed.circuit is not None
    record = closed.circuit
    assert (record.state, record.failures, record.forced, record.opened_at) == (
        "closed", 0, False, None,
    )
    unknown = await store.force_circuit("never-seen", open_=False)
    assert unknown.circuit is None and unknown.transition is None
    assert [c.key for c in await store.list_circuits()] == [KEY]


# -- the guard alone ---------------------------------------------------------------------------


def _call(wf: Workflow, attempt: int = 1) -> Call:
    step = wf.steps["s"]
    return Call("run-1", wf.name, step, -1, attempt, step.action, {}, primary=True)


def _wf(circuit: dict[str, Any] | None = None, agent: str | None = None) -> Workflow:
    step: dict[str, Any] = {"kind": "http", "url": "https://api.example:443/v1/x"}
    if circuit is not None:
        step["circuit"] = circuit
    agents: dict[str, Any] = {}
    if agent is not None:
        agents[agent] = step
        step = {"agent": agent}
    return Workflow.model_validate({"name": "wf", "agents": agents, "steps": {"s": step}})


async def test_refused_and_cancelled_calls_do_not_count(store: Store) -> None:
    events: list[tuple[str, str, dict[str, Any]]] = []
    guard = CircuitGuard(ControlConfig(), store, lambda *e: events.append(e))
    wf = _wf({"failures": 1, "cooldown": "1m"})
    for outcome in ("refused", "cancelled"):
        call = _call(wf)
        await pass_guard(guard, call)
        guard.exit(call, outcome)  # type: ignore[arg-type]
    await guard.flush()
    assert await store.list_circuits() == [] and events == []
    call = _call(wf)
    await pass_guard(guard, call)
    guard.exit(call, "failed")
    await guard.flush()
    assert [e[1] for e in events] == ["system.circuit.opened"]
    assert events[0][0] == "run-1" and events[0][2]["circuit"] == KEY
    with pytest.raises(CircuitOpen, match=f"circuit {KEY} is open: 1 consecutive failed"):
        await pass_guard(guard, _call(wf))


async def test_a_cancelled_trial_hands_its_slot_back(store: Store) -> None:
    guard = CircuitGuard(ControlConfig(), store, lambda *e: None)
    wf = _wf({"failures": 1, "cooldown": 0})
    await store.circuit_failure(KEY, failures=1, cooldown_s=0)
    await guard.refresh()
    call = _call(wf)
    await pass_guard(guard, call)  # takes the only trial slot
    with pytest.raises(CircuitOpen, match="half-open with its 1 trial call"):
        await pass_guard(guard, _call(wf))
    guard.exit(call, "cancelled")
    await guard.flush()
    [row] = await store.list_circuits()
    assert (row.state, row.trials) == ("half_open", 0)


def test_policy_resolution_prefers_the_operator_then_the_step_then_the_default() -> None:
    operator = CircuitPolicy(failures=1)
    default = CircuitPolicy(failures=9)
    config = ControlConfig(
        agents={"writer": AgentControl(circuit=operator)}, circuits=Circuits(default=default)
    )
    with_agent = _wf({"failures": 4}, agent="writer").steps["s"]
    assert resolve_policy(config, with_agent) is operator
    step = _wf({"failures": 4}).steps["s"]
    policy = resolve_policy(config, step)
    assert policy is not None and policy.failures == 4
    assert resolve_policy(config, _wf().steps["s"]) is default
    assert resolve_policy(ControlConfig(), _wf().steps["s"]) is None
