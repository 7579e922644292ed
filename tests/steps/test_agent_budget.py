"""Each model call of an agent loop passes the control layer's guards, not only its attempt:
a run or workflow budget stops a loop between turns with no request past it, `rpm` holds the
next turn back on the engine clock, a circuit that opens mid-loop stops the next turn, and a
run's cost agrees with the spend ledger. Both stores, local models on the real wire."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import budget_tools
import pytest
from clocklib import advance_until, eventually, step_through
from fake_agents import MODEL, OPENAI_KEY, running

from podium.bus import open_bus
from podium.clock import FakeClock
from podium.control.config import Budgets, ControlConfig, ScopeBudget
from podium.engine.engine import Engine
from podium.engine.summary import RunSummary
from podium.model.pricing import DEFAULT_PRICING
from podium.model.workflow import Workflow
from podium.settings import Settings
from podium.store import Store
from podium.store.spend import SpendGroup

WORKFLOW = "agent-budget-test"
USAGE = (10_000, 50)  # what each reply says it used: far above a turn's estimate in
PER_CALL = DEFAULT_PRICING.cost_usd(MODEL, *USAGE)
# Room for two calls and less than any third: a turn's estimate holds all 100 output tokens.
LIMIT = 2 * PER_CALL + DEFAULT_PRICING.cost_usd(MODEL, 0, 50)
COUNT = {"kind": "python", "call": "agent_tools:count"}
GATE = {"kind": "python", "call": "budget_tools:gate"}


@asynccontextmanager
async def engine_on(
    store: Store, control: ControlConfig | None = None, clock: FakeClock | None = None
) -> AsyncIterator[Engine]:
    settings = Settings(
        poll_interval_s=0.02, lease_s=5, store_retry_s=0.5, control=control or ControlConfig()
    )
    async with (
        open_bus("memory://") as bus,
        Engine(store, bus, settings, secrets={"OPENAI_API_KEY": OPENAI_KEY}, clock=clock) as e,
    ):
        yield e


def agent_step(url: str, **step: Any) -> dict[str, Any]:
    return {
        "kind": "llm", "model": MODEL, "base_url": url + "/v1", "prompt": "find facts",
        "max_tokens": 100, "tools": {"count": COUNT}, "loop": {"max_turns": 50},
        "retry": {"attempts": 3}, **step,
    }


def workflow(steps: dict[str, Any], **fields: Any) -> Workflow:
    return Workflow.model_validate({"name": WORKFLOW, "steps": steps, **fields})


async def run(engine: Engine, wf: Workflow) -> RunSummary:
    return await engine.wait(await engine.submit(wf))


async def ledger_of(store: Store, run_id: str) -> SpendGroup:
    (booked,) = [g for g in await store.spend_report("run", 0.0) if g.key == run_id]
    return booked


async def events(store: Store, event_type: str, run_id: str | None = None) -> list[Any]:
    found = await store.list_events(run_id, limit=10_000) if run_id else await store.list_events(
        limit=10_000
    )
    return [e.payload for _, e in found if e.event_type == event_type]


async def test_a_run_budget_stops_the_loop_between_turns_with_no_request_past_it(
    store: Store,
) -> None:
    with running([["count"]], forever=True, usage=USAGE) as model:
        async with engine_on(store) as engine:
            summary = await run(engine, workflow(
                {"research": agent_step(model.url)}, budget={"usd": LIMIT}
            ))
    step = summary.steps["research"]
    assert summary.status == "failed"
    assert step.error is not None and step.error.startswith("budget_exceeded: the run budget")
    assert "the agent loop stopped before turn 3" in step.error
    assert step.error_type == "BudgetExceeded"
    assert step.attempts == 1  # a refusal is not retried
    assert len(model.requests) == 2  # no request past the limit
    booked = await ledger_of(store, summary.run_id)
    assert booked.calls == 2 and booked.usd == pytest.approx(2 * PER_CALL)
    assert booked.usd <= LIMIT
    # The run's cost is what the ledger holds for it, the failed step's calls included.
    assert summary.cost_usd == pytest.approx(booked.usd)
    assert (summary.tokens.input, summary.tokens.output) == (booked.tokens_in, booked.tokens_out)


async def test_a_refused_turn_falls_back(store: Store) -> None:
    with running([["count"]], forever=True, usage=USAGE) as model:
        async with engine_on(store) as engine:
            step = agent_step(model.url, fallback={"kind": "sim", "output": "plan B"})
            summary = await run(engine, workflow({"research": step}, budget={"usd": LIMIT}))
    research = summary.steps["research"]
    assert research.fallback_used and research.output == "plan B"
    assert len(model.requests) == 2
    assert summary.cost_usd == pytest.approx((await ledger_of(store, summary.run_id)).usd)


async def test_a_workflow_budget_stops_the_loop_between_turns_and_warns_once(
    store: Store,
) -> None:
    budgets = Budgets(warn_at=0.5, workflows={WORKFLOW: ScopeBudget(daily_usd=LIMIT)})
    with running([["count"]], forever=True, usage=USAGE) as model:
        async with engine_on(store, ControlConfig(budgets=budgets)) as engine:
            summary = await run(engine, workflow({"research": agent_step(model.url)}))
    step = summary.steps["research"]
    assert summary.status == "failed"
    assert step.error is not None
    assert step.error.startswith(f"budget_exceeded: the workflow {WORKFLOW} daily budget")
    assert "the agent loop stopped before turn 3" in step.error
    assert len(model.requests) == 2 and step.attempts == 1
    booked = await ledger_of(store, summary.run_id)
    assert booked.calls == 2 and booked.usd <= LIMIT
    # Turn 2 went ahead past half the limit: warned once; the refused turn 3 warns of nothing.
    warnings = await events(store, "system.cost.budget.warning")
    assert [(w["scope"], w["step"]) for w in warnings] == [
        (f"workflow/{WORKFLOW}/daily", "research")
    ]
    assert warnings[0]["spent_usd"] == pytest.approx(PER_CALL)


async def test_a_throttled_budget_holds_the_next_turn_back_on_the_engine_clock(
    clocked_store: Store, clock: FakeClock
) -> None:
    budgets = Budgets(action="throttle", workflows={WORKFLOW: ScopeBudget(hourly_usd=LIMIT)})
    with running([["count"], ["count"]], usage=USAGE) as model:
        async with engine_on(clocked_store, ControlConfig(budgets=budgets), clock) as engine:
            run_id = await engine.submit(workflow({"research": agent_step(model.url)}))
            # Two turns fit the hour; the third waits for the first to roll out of it.
            await eventually(lambda: len(model.requests) == 2)

            async def throttled() -> bool:
                return bool(await events(clocked_store, "agent.task.throttled", run_id))

            await eventually(throttled)
            started = clock.now()

            async def done() -> bool:
                row = await clocked_store.get_run(run_id)
                return row is not None and row.done

            await advance_until(clock, done, 30.0)
            summary = await engine.summary(run_id)
    assert summary.status == "succeeded", summary.steps["research"].error
    assert len(model.requests) == 3
    assert clock.now() - started >= 3000  # turn 3 waited for the hour to roll on
    (event,) = await events(clocked_store, "agent.task.throttled", run_id)
    assert event["step"] == "research" and event["scope"] == f"workflow/{WORKFLOW}/hourly"
    waited = await events(clocked_store, "agent.task.waited", run_id)
    assert [w["guard"] for w in waited] == ["budget"]


async def test_an_rpm_limit_holds_the_second_turn_back_on_the_engine_clock(
    clocked_store: Store, clock: FakeClock
) -> None:
    with running([["count"]], usage=USAGE) as model:
        async with engine_on(clocked_store, clock=clock) as engine:
            step = agent_step(model.url, limits={"rpm": 1}, timeout="1h")
            run_id = await engine.submit(workflow({"research": step}))
            await eventually(lambda: len(model.requests) == 1)
            buckets = engine.control.buckets
            waits = sum(buckets.waits.values())  # calls that waited for tokens so far
            await eventually(lambda: sum(buckets.waits.values()) > waits)  # turn 2 waits
            await step_through(clock, 30.0, 1.0)  # half a minute: half a request
            assert len(model.requests) == 1

            async def done() -> bool:
                row = await clocked_store.get_run(run_id)
                return row is not None and row.done

            await advance_until(clock, done, 1.0)
            summary = await engine.summary(run_id)
    assert summary.status == "succeeded", summary.steps["research"].error
    assert len(model.requests) == 2
    (waited,) = await events(clocked_store, "agent.task.waited", run_id)
    assert waited["guard"] == "limits" and waited["step"] == "research"
    # A minute's request, on the engine clock (more if the loop lagged behind the clock).
    assert waited["waited_s"] >= 50


async def test_a_circuit_that_opens_mid_loop_stops_the_next_turn(store: Store) -> None:
    entered, opened = budget_tools.close_gate()
    circuit = {"failures": 1, "cooldown": "1h"}
    with running([["gate"]], forever=True, usage=USAGE) as model:
        async with engine_on(store) as engine:
            steps = {
                "research": agent_step(
                    model.url, tools={"gate": GATE}, agent="writer", circuit=circuit
                ),
                # The writer's other call fails while the loop's tool runs: the circuit opens.
                "other": {
                    "kind": "python", "call": "budget_tools:boom", "agent": "writer",
                    "circuit": circuit, "optional": True, "retry": {"attempts": 1},
                    "needs": [],
                },
            }
            run_id = await engine.submit(workflow(steps))
            await entered.wait()

            def open_() -> bool:
                state = engine.control.circuits.states().get("writer")
                return state is not None and state.state == "open"

            await eventually(open_)
            opened.set()
            summary = await engine.wait(run_id)
    step = summary.steps["research"]
    assert summary.status == "failed"
    assert step.error is not None and step.error.startswith("circuit writer is open")
    assert "the agent loop stopped before turn 2" in step.error
    assert step.attempts == 1
    assert len(model.requests) == 1  # turn 2 was never asked for


async def test_a_turn_that_fails_counts_once_against_the_circuit(store: Store) -> None:
    """The loop's failed call is the circuit's failure; the attempt adds none of its own."""
    with running([["count"]], usage=USAGE, fail_turns={2}) as model:
        async with engine_on(store) as engine:
            step = agent_step(
                model.url, agent="writer", circuit={"failures": 2, "cooldown": "1h"},
                retry={"attempts": 3, "backoff": 0},
            )
            summary = await run(engine, workflow({"research": step}))
            await engine.control.circuits.flush()
            state = engine.control.circuits.states()["writer"]
    step_summary = summary.steps["research"]
    assert summary.status == "failed"
    # Attempt 1: turn 1 answered, turn 2 failed (1 failure). Attempt 2 replays turn 1 and
    # asks turn 2 again: it fails (2 failures: open). Attempt 3 is refused before any call.
    assert model.turns() == [1, 2, 2]
    assert step_summary.error is not None and "circuit writer is open" in step_summary.error
    assert state.state == "open" and state.failures == 2


async def test_a_failed_steps_booked_calls_are_in_the_runs_cost(store: Store) -> None:
    """A plain `llm` step whose replies are paid for and then refused (not JSON): the run's
    cost and tokens are the spend ledger's, as `podium spend --by run` shows them."""
    with running([], usage=USAGE) as model:
        async with engine_on(store) as engine:
            step = {
                "kind": "llm", "model": MODEL, "base_url": model.url + "/v1",
                "prompt": "answer in JSON", "json_output": True,
                "retry": {"attempts": 2, "backoff": 0},
            }
            summary = await run(engine, workflow({"ask": step}))
    assert summary.status == "failed"
    assert len(model.requests) == 2
    booked = await ledger_of(store, summary.run_id)
    assert booked.calls == 2 and booked.usd == pytest.approx(2 * PER_CALL)
    assert summary.cost_usd == pytest.approx(booked.usd)
    assert (summary.tokens.input, summary.tokens.output) == (booked.tokens_in, booked.tokens_out)
