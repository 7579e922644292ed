"""Circuit breakers through the engine, on both stores.

closed -> open after N failures -> half-open after the cool-down -> closed after M trial
successes; an open circuit sends the step straight to its fallback without calling it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import circuitlib
import pytest
from circuitlib import events_of, run_settled, settings, workflow
from clocklib import advance_until, eventually

from podium.bus.base import Bus
from podium.clock import FakeClock
from podium.control.config import AgentControl, Circuits, ControlConfig
from podium.engine.engine import Engine
from podium.model.workflow import CircuitPolicy
from podium.store import open_store
from podium.store.base import Store

KEY = "python:circuitlib:body"


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    circuitlib.reset()
    yield
    circuitlib.reset()


async def test_consecutive_failures_open_the_circuit_and_send_the_step_to_its_fallback(
    store: Store, bus: Bus
) -> None:
    circuitlib.FAILING.add("api")
    wf = workflow({"failures": 2, "cooldown": "1m"})
    async with Engine(store, bus, settings()) as engine:
        for _ in range(2):
            first = await run_settled(engine, wf)
            assert first.steps["s"].fallback_used
        assert circuitlib.CALLS == {"api": 2}
        [circuit] = await store.list_circuits()
        assert (circuit.key, circuit.state, circuit.failures) == (KEY, "open", 2)

        # Open: no call, no retry burnt, straight to the fallback; the error says why.
        blocked = await run_settled(engine, workflow({"failures": 2, "cooldown": "1m"}, attempts=3))
    assert circuitlib.CALLS == {"api": 2}
    step = blocked.steps["s"]
    assert blocked.status == "degraded" and step.fallback_used and step.attempts == 1
    assert step.output == {"fallback": True}
    events = [(e.event_type, e.payload) for _, e in await store.list_events(blocked.run_id)]
    assert not [t for t, _ in events if t == "agent.task.retrying"]
    [(_, fallback)] = [(t, p) for t, p in events if t == "agent.task.fallback"]
    assert f"circuit {KEY} is open" in fallback["error"]
    assert "may half-open at" in fallback["error"]
    opened = await events_of(store)
    assert opened == [
        (
            "system.circuit.opened",
            {
                "circuit": KEY,
                "state": "open",
                "failures": 2,
                "cooldown_s": 60.0,
                "reason": "2 consecutive failed attempts",
            },
        )
    ]


async def test_a_success_resets_the_count_and_a_healthy_circuit_writes_nothing(
    store: Store, bus: Bus
) -> None:
    wf = workflow({"failures": 2, "cooldown": "1m"})
    async with Engine(store, bus, settings()) as engine:
        for _ in range(3):
            await run_settled(engine, wf)
        assert await store.list_circuits() == []  # the hot path: no row, no round trip
        for failing in (True, False, True):
            (circuitlib.FAILING.add if failing else circuitlib.FAILING.discard)("api")
            await run_settled(engine, wf)
        [circuit] = await store.list_circuits()
    assert (circuit.state, circuit.failures) == ("closed", 1)  # fail, ok, fail: never 2 in a row
    assert circuitlib.CALLS == {"api": 6}


async def test_timeouts_count_as_failures(store: Store, bus: Bus) -> None:
    wf = workflow({"failures": 1, "cooldown": "1m"}, delay=3600, timeout="50ms")
    async with Engine(store, bus, settings()) as engine:
        await run_settled(engine, wf)
        [circuit] = await store.list_circuits()
    assert circuit.state == "open"


async def test_after_the_cool_down_a_trial_success_closes_the_circuit(
    clocked_store: Store, clock: FakeClock, bus: Bus
) -> None:
    store = clocked_store
    policy = {"failures": 1, "cooldown": "300ms", "successes": 2}
    async with Engine(store, bus, settings()) as engine:
        circuitlib.FAILING.add("api")
        await run_settled(engine, workflow(policy))
        circuitlib.FAILING.clear()
        clock.advance(0.299)  # not quite cooled down: still refused
        assert (await run_settled(engine, workflow(policy))).steps["s"].fallback_used
        assert circuitlib.CALLS == {"api": 1}
        clock.advance(0.001)
        first = await run_settled(engine, workflow(policy))
        [circuit] = await store.list_circuits()
        assert (circuit.state, circuit.successes) == ("half_open", 1)
        second = await run_settled(engine, workflow(policy))
        [circuit] = await store.list_circuits()
    assert not first.steps["s"].fallback_used and not second.steps["s"].fallback_used
    assert (circuit.state, circuit.failures, circuit.trials) == ("closed", 0, 0)
    assert [t for t, _ in await events_of(store)] == [
        "system.circuit.opened", "system.circuit.half_opened", "system.circuit.closed",
    ]
    assert circuitlib.CALLS == {"api": 3}


async def test_a_failed_trial_reopens_the_circuit_and_restarts_the_cool_down(
    clocked_store: Store, clock: FakeClock, bus: Bus
) -> None:
    store = clocked_store
    policy = {"failures": 1, "cooldown": "300ms"}
    circuitlib.FAILING.add("api")
    async with Engine(store, bus, settings()) as engine:
        await run_settled(engine, workflow(policy))
        [first] = await store.list_circuits()
        clock.advance(0.3)
        await run_settled(engine, workflow(policy))  # the trial: called, and fails
        [again] = await store.list_circuits()
        assert circuitlib.CALLS == {"api": 2}
        assert again.state == "open" and again.opened_at is not None
        assert first.opened_at is not None and again.opened_at > first.opened_at
        clock.advance(0.299)  # the first cool-down would be over by now, the new one is not
        refused = await run_settled(engine, workflow(policy))
    assert refused.steps["s"].fallback_used and circuitlib.CALLS == {"api": 2}
    events = await events_of(store)
    assert [t for t, _ in events] == [
        "system.circuit.opened", "system.circuit.half_opened", "system.circuit.opened",
    ]
    assert events[-1][1]["reason"] == "a trial call failed"


async def test_half_open_lets_at_most_half_open_max_trials_through_at_once(
    clocked_store: Store, clock: FakeClock, bus: Bus
) -> None:
    store = clocked_store
    policy = {"failures": 1, "cooldown": "200ms", "half_open_max": 2, "successes": 10}
    async with Engine(store, bus, settings()) as engine:
        circuitlib.FAILING.add("api")
        await run_settled(engine, workflow(policy))
        circuitlib.FAILING.clear()
        circuitlib.IN_FLIGHT.update(now=0, peak=0)
        circuitlib.GATE = asyncio.Event()
        clock.advance(0.2)
        held = workflow(policy, held=True, timeout="1h")
        runs = await asyncio.gather(*(engine.submit(held) for _ in range(6)))
        waits = [asyncio.ensure_future(engine.wait(r)) for r in runs]
        # The two trials stay in flight until every other call has met the half-open circuit.
        await eventually(lambda: sum(w.done() for w in waits) == 4)
        assert circuitlib.IN_FLIGHT["now"] == 2
        circuitlib.GATE.set()
        summaries = await asyncio.gather(*waits)
        await engine.control.circuits.flush()
        [circuit] = await store.list_circuits()
    called = [s for s in summaries if not s.steps["s"].fallback_used]
    assert len(called) == 2 and circuitlib.IN_FLIGHT["peak"] == 2
    assert all(s.status == "degraded" for s in summaries if s not in called)
    assert circuitlib.CALLS == {"api": 3}
    assert (circuit.state, circuit.successes, circuit.trials) == ("half_open", 2, 0)


async def test_two_engines_on_one_store_share_a_circuit(
    store_url: str, clock: FakeClock, bus: Bus
) -> None:
    policy = {"failures": 2, "cooldown": "1m"}
    async with (
        open_store(store_url, clock=clock) as store_a,
        open_store(store_url, clock=clock) as store_b,
        Engine(store_a, bus, settings()) as engine_a,
        Engine(store_b, bus, settings()) as engine_b,
    ):
        def seen_by_b(state: str) -> bool:
            record = engine_b.control.circuits.states().get(KEY)
            return (record.state if record else "closed") == state

        assert not (await run_settled(engine_b, workflow(policy))).steps["s"].fallback_used
        circuitlib.FAILING.add("api")
        for _ in range(2):
            await run_settled(engine_a, workflow(policy))
        # B learns it on its own poll (every 20 ms), not from a call of its own.
        await advance_until(clock, lambda: seen_by_b("open"), 0.02)
        refused_by_b = await run_settled(engine_b, workflow(policy))
        assert refused_by_b.steps["s"].fallback_used
        # Forced closed elsewhere (as `podium circuits close` does): B lets calls through again.
        circuitlib.FAILING.clear()
        await store_a.force_circuit(KEY, open_=False)
        await advance_until(clock, lambda: seen_by_b("closed"), 0.02)
        again = await run_settled(engine_b, workflow(policy))
    assert not again.steps["s"].fallback_used
    assert circuitlib.CALLS == {"api": 4}


async def test_an_agent_has_one_circuit_and_the_operator_policy_wins(
    store: Store, bus: Bus
) -> None:
    control = ControlConfig(
        agents={"writer": AgentControl(circuit=CircuitPolicy(failures=1, cooldown_s=60))},
        circuits=Circuits(default=CircuitPolicy(failures=50)),
    )
    circuitlib.FAILING.add("writer")
    async with Engine(store, bus, settings(control)) as engine:
        # The workflow asks for 5 failures; the operator's [agents.writer] says 1.
        await run_settled(engine, workflow({"failures": 5}, name="writer", agent=True))
        blocked = await run_settled(engine, workflow({"failures": 5}, name="writer", agent=True))
        # Another target, under the default policy (50 failures): still closed.
        circuitlib.FAILING.add("other")
        await run_settled(engine, workflow(None, name="other"))
        circuits = {c.key: c for c in await store.list_circuits()}
    assert blocked.steps["s"].fallback_used and circuitlib.CALLS["writer"] == 1
    assert circuits["writer"].state == "open"
    assert (circuits[KEY].state, circuits[KEY].failures) == ("closed", 1)


async def test_without_any_policy_calls_pass_untouched(store: Store, bus: Bus) -> None:
    circuitlib.FAILING.add("api")
    async with Engine(store, bus, settings()) as engine:
        for _ in range(3):
            await run_settled(engine, workflow(None))
        assert engine.control.circuits not in engine.control.guards  # no policy: no cost
        await run_settled(engine, workflow({"failures": 9}))
        assert engine.control.circuits in engine.control.guards  # the first policy turns it on
    assert circuitlib.CALLS == {"api": 4}
    [circuit] = await store.list_circuits()
    assert (circuit.state, circuit.failures) == ("closed", 1)


async def test_the_fallback_is_not_guarded_by_the_circuit(store: Store, bus: Bus) -> None:
    # The fallback calls the same python target as the step: an open circuit does not stop it.
    circuitlib.FAILING.add("api")
    wf = workflow({"failures": 1, "cooldown": "1m"})
    step = wf.steps["s"].model_copy(update={"fallback": wf.steps["s"].action.model_copy()})
    wf = wf.model_copy(update={"steps": {"s": step}})
    async with Engine(store, bus, settings()) as engine:
        await run_settled(engine, wf)
        await run_settled(engine, wf)  # bounded: a fallback waiting for the cool-down fails it
    assert circuitlib.CALLS == {"api": 3}  # 1 primary + 2 fallbacks
