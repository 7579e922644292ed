"""Budgets in the engine: run, workflow and global scopes, block and throttle.

Every test runs on SQLite and PostgreSQL; calls are counted where they land (the fake LLM
server's request log, the spend ledger), never by asking the guard.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from budget_holder import BUDGETS, LEASE_S
from budget_support import (
    add_old_spend,
    chain,
    engine_on,
    events_of,
    fake_providers,
    parallel,
    settings_with,
    sim,
)
from clocklib import advance_until, eventually, step_through
from holders import kill_while_holding

from podium.clock import FakeClock
from podium.control.budgets import windows_of
from podium.model.workflow import Workflow
from podium.settings import Settings
from podium.store import Store, open_store
from podium.store.spend import WindowScope

fakes = fake_providers()
KEYS = {"OPENAI_API_KEY": fakes.OPENAI_KEY}
# "say: abc" is 8 characters (2 tokens estimated) and 2 words (2 tokens counted by the fake);
# the reply "abc" is 1 token, and max_tokens 1 caps the estimate at 1: estimate == cost.
CALL_USD = (2 * 2.50 + 1 * 10.00) / 1e6  # gpt-4o


@pytest.fixture
def server() -> Iterator[Any]:
    with fakes.running() as srv:
        yield srv


def llm(server: Any) -> dict[str, Any]:
    return {"kind": "llm", "model": "gpt-4o", "base_url": f"{server.url}/v1",
            "prompt": "say: abc", "max_tokens": 1, "retry": {"attempts": 1}}


async def test_a_chain_stops_at_the_run_budget_and_no_call_is_made_past_it(
    store: Store, server: Any
) -> None:
    # Room for three calls, not four.
    wf = chain("llm-chain", 5, llm(server), budget={"usd": CALL_USD * 3.5})
    async with engine_on(store, Settings(poll_interval_s=0.02, lease_s=5), **KEYS) as engine:
        summary = await engine.run(wf)

    assert len(server.requests) == 3
    assert [summary.steps[f"s{i}"].status for i in range(5)] == [
        "succeeded", "succeeded", "succeeded", "failed", "skipped"
    ]
    error = summary.steps["s3"].error or ""
    assert error.startswith("budget_exceeded: the run budget of $0.0000525")
    assert "spent $0.000045" in error and "the call was not made" in error
    assert summary.steps["s3"].attempts == 1  # refused: not retried
    assert summary.status == "failed"
    assert summary.cost_usd == pytest.approx(CALL_USD * 3)
    [group] = await store.spend_report("workflow", 0)
    assert (group.key, group.calls, group.tokens_in, group.tokens_out) == ("llm-chain", 3, 6, 3)
    assert group.usd == pytest.approx(summary.cost_usd)


async def test_a_refused_step_takes_its_fallback_or_degrades_the_run(store: Store) -> None:
    wf = Workflow.model_validate({
        "name": "refused", "budget": {"usd": 0.25},
        "steps": {
            "a": sim(0.2),
            "b": {**sim(0.1), "needs": ["a"], "fallback": sim(0.0, output="cheap")},
            "c": {**sim(0.1), "needs": ["b"], "optional": True},
            "d": {**sim(0.0, output="free"), "needs": ["b"]},
        },
    })
    async with engine_on(store, Settings(poll_interval_s=0.02, lease_s=5)) as engine:
        summary = await engine.run(wf)

    assert summary.status == "degraded"
    assert summary.steps["b"].output == "cheap"
    assert summary.steps["b"].fallback_used
    assert summary.steps["c"].status == "failed"
    assert (summary.steps["c"].error or "").startswith("budget_exceeded: the run budget")
    assert summary.steps["d"].status == "succeeded"
    assert summary.cost_usd == pytest.approx(0.2)


async def test_parallel_steps_of_one_run_cannot_overshoot_the_budget_together(
    store: Store,
) -> None:
    wf = parallel("fan", 6, {**sim(0.1, latency="100ms"), "optional": True},
                  budget={"usd": 0.35})
    async with engine_on(store, Settings(poll_interval_s=0.02, lease_s=5)) as engine:
        summary = await engine.run(wf)

    statuses = sorted(s.status for s in summary.steps.values())
    assert statuses == ["failed"] * 3 + ["succeeded"] * 3
    assert summary.cost_usd == pytest.approx(0.3)
    [group] = await store.spend_report("run", 0)
    assert group.calls == 3


async def test_a_throttled_run_budget_waits_for_its_own_calls_in_flight(store: Store) -> None:
    # Each call is estimated at $0.10 (10,000 gpt-4o output tokens) but the sim bills $0:
    # block refuses what the holds of siblings leave no room for; throttle waits for them.
    step = {**sim(0.0, latency="100ms", tokens={"output": 10_000}, model="gpt-4o"),
            "optional": True}
    blocked = parallel("held-block", 5, step, budget={"usd": 0.25})
    waited = parallel("held-wait", 5, step, budget={"usd": 0.25, "action": "throttle"})
    async with engine_on(store, Settings(poll_interval_s=0.02, lease_s=5)) as engine:
        refused = await engine.run(blocked)
        passed = await engine.run(waited)

    assert sorted(s.status for s in refused.steps.values()).count("failed") == 3
    assert {s.status for s in passed.steps.values()} == {"succeeded"}
    throttled = [e for e in await events_of(store, "agent.task.throttled")
                 if e.correlation_id == passed.run_id]
    assert len(throttled) == 3


async def test_a_global_daily_limit_holds_across_two_engines_on_one_store(
    store: Store, store_url: str
) -> None:
    settings = settings_with(daily_usd=0.5)
    wf = parallel("shared", 4, {**sim(0.1, latency="50ms"), "optional": True})
    async with (
        open_store(store_url) as other_store,
        engine_on(store, settings) as first,
        engine_on(other_store, settings) as second,
    ):
        runs = await asyncio.gather(*(e.run(wf) for e in (first, second, first, second)))

    succeeded = [s for r in runs for s in r.steps.values() if s.status == "succeeded"]
    refused = [s for r in runs for s in r.steps.values() if s.status == "failed"]
    assert len(succeeded) == 5 and len(refused) == 11
    assert all((s.error or "").startswith(
        "budget_exceeded: the global daily budget (rolling 24h) of $0.50") for s in refused)
    [usage] = await store.budget_usage(_scopes(settings))
    assert usage.spent_usd == pytest.approx(0.5)
    assert usage.held_usd == pytest.approx(0.0, abs=1e-9)  # every hold handed back


async def test_a_workflow_limit_counts_only_that_workflow(store: Store) -> None:
    settings = settings_with(workflows={"capped": {"hourly_usd": 0.25}})
    capped = chain("capped", 4, {**sim(0.1), "optional": True, "trigger": "all_done"})
    free = chain("free", 4, sim(0.1))
    async with engine_on(store, settings) as engine:
        first = await engine.run(capped)
        second = await engine.run(free)

    assert [first.steps[f"s{i}"].status for i in range(4)] == [
        "succeeded", "succeeded", "failed", "failed"
    ]
    assert "workflow capped hourly budget (rolling 1h) of $0.25" in (first.steps["s2"].error or "")
    assert second.status == "succeeded"


async def test_the_warning_is_recorded_once_when_spend_crosses_the_threshold(
    store: Store,
) -> None:
    settings = settings_with(daily_usd=1.0, warn_at=0.5)
    wf = chain("warned", 8, sim(0.1), budget={"usd": 10.0, "warn_at": 0.5})
    async with engine_on(store, settings) as engine:
        summary = await engine.run(wf)

    assert summary.status == "succeeded"
    warnings = await events_of(store, "system.cost.budget.warning")
    assert [w.payload["scope"] for w in warnings] == ["global/daily"]
    [warning] = warnings
    assert warning.payload["limit_usd"] == 1.0 and warning.payload["warn_at"] == 0.5
    # The fifth call is the one that crosses $0.50: four were spent before it.
    assert warning.payload["spent_usd"] == pytest.approx(0.4)
    assert warning.payload["step"] == "s4"


async def test_a_refused_call_emits_no_budget_warning(store: Store) -> None:
    # The run budget refuses the first run's call, the daily window the second's: neither
    # call is made, so neither may warn that spend is about to cross a threshold.
    settings = settings_with(daily_usd=0.15, warn_at=0.5)
    over_run = chain("over-run", 1, sim(0.2), budget={"usd": 0.1, "warn_at": 0.5})
    over_day = chain("over-day", 1, sim(0.2), budget={"usd": 10.0, "warn_at": 0.01})
    async with engine_on(store, settings) as engine:
        first = await engine.run(over_run)
        second = await engine.run(over_day)

    assert (first.steps["s0"].error or "").startswith("budget_exceeded: the run budget")
    assert (second.steps["s0"].error or "").startswith("budget_exceeded: the global daily")
    assert await events_of(store, "system.cost.budget.warning") == []


async def test_throttle_waits_until_the_rolling_window_has_room_then_proceeds(
    clocked_store: Store, clock: FakeClock
) -> None:
    store = clocked_store
    settings = settings_with(hourly_usd=1.0, action="throttle")
    # $0.95 spent 1 s short of an hour ago: the window frees it one second from now.
    await add_old_spend(store, "elsewhere", 0.95, age_s=3600 - 1.0)
    wf = chain("patient", 1, sim(0.1))
    async with engine_on(store, settings) as engine:
        started = clock.now()
        run = asyncio.ensure_future(engine.run(wf))
        await advance_until(clock, run.done, 0.05)
        summary = await run

    assert summary.status == "succeeded"
    assert clock.now() - started >= 1.0
    [throttled] = await events_of(store, "agent.task.throttled")
    assert throttled.payload["scope"] == "global/hourly"
    assert throttled.payload["spent_usd"] == pytest.approx(0.95)


async def test_throttle_refuses_a_call_larger_than_the_whole_limit(store: Store) -> None:
    settings = settings_with(hourly_usd=0.05, action="throttle")
    async with engine_on(store, settings) as engine:
        summary = await engine.run(chain("huge", 1, sim(0.1)))

    assert summary.status == "failed"
    assert (summary.steps["s0"].error or "").startswith("budget_exceeded: the global hourly")
    assert await events_of(store, "agent.task.throttled") == []


async def test_for_each_instances_and_fallbacks_write_one_spend_row_each(store: Store) -> None:
    wf = Workflow.model_validate({
        "name": "ledger",
        "steps": {
            "fan": {**sim(0.01, model="gpt-4o", tokens={"input": 5, "output": 7}),
                    "for_each": [1, 2, 3]},
            "fb": {**sim(0.5, fail_times=5), "retry": {"attempts": 1},
                   "fallback": sim(0.02, model="gpt-4o-mini")},
            "free": sim(0.0),
        },
    })
    async with engine_on(store, Settings(poll_interval_s=0.02, lease_s=5)) as engine:
        summary = await engine.run(wf)

    assert summary.cost_usd == pytest.approx(0.05)
    by_model = {g.key: g for g in await store.spend_report("model", 0)}
    assert by_model["gpt-4o"].calls == 3 and by_model["gpt-4o"].usd == pytest.approx(0.03)
    assert (by_model["gpt-4o"].tokens_in, by_model["gpt-4o"].tokens_out) == (15, 21)
    assert by_model["gpt-4o-mini"].calls == 1
    assert set(by_model) == {"gpt-4o", "gpt-4o-mini"}
    [by_run] = await store.spend_report("run", 0)
    assert by_run.key == summary.run_id and by_run.usd == pytest.approx(summary.cost_usd)


def _scopes(settings: Settings) -> list[WindowScope]:
    return windows_of(settings.control.budgets)


async def held(store: Store, settings: Settings) -> bool:
    [usage] = await store.budget_usage(_scopes(settings))
    return usage.held_usd > 0


async def test_the_budget_guard_joins_only_once_a_budget_can_apply(store: Store) -> None:
    async with engine_on(store, Settings(poll_interval_s=0.02, lease_s=5)) as engine:
        assert engine.control.budgets not in engine.control.guards
        await engine.run(chain("unbudgeted", 1, sim(0.1)))
        assert engine.control.budgets not in engine.control.guards
        await engine.run(chain("budgeted", 1, sim(0.1), budget={"usd": 1}))
        assert engine.control.guards[0] is engine.control.budgets
    async with engine_on(store, settings_with(daily_usd=1)) as engine:
        assert engine.control.guards[0] is engine.control.budgets


async def test_a_long_call_keeps_its_hold_past_the_lease_while_its_engine_lives(
    clocked_store: Store, clock: FakeClock
) -> None:
    store = clocked_store
    settings = settings_with(daily_usd=1.0).model_copy(update={"lease_s": 0.3})
    async with engine_on(store, settings) as engine:
        run_id = await engine.submit(chain("slow", 1, sim(0.25, latency="1s")))
        await eventually(lambda: held(store, settings))
        await step_through(clock, 0.7, 0.02)  # past two lease lengths: renewed, not run out
        [usage] = await store.budget_usage(_scopes(settings))
        assert usage.held_usd == pytest.approx(0.25)
        done = asyncio.ensure_future(engine.wait(run_id))
        await advance_until(clock, done.done, 0.02)
        summary = await done

    assert summary.status == "succeeded"
    [usage] = await store.budget_usage(_scopes(settings))
    assert (usage.spent_usd, usage.held_usd) == (pytest.approx(0.25), 0)


async def test_a_killed_engines_hold_runs_out_with_its_lease(store_url: str) -> None:
    await kill_while_holding("budget_holder.py", store_url)
    # The holder kept real time: this clock starts where it died, at most a lease after its
    # hold was last renewed.
    clock = FakeClock(start=time.time())

    settings = settings_with(**BUDGETS.model_dump()).model_copy(update={"lease_s": LEASE_S})
    blocked = chain("after-crash", 1, sim(0.6))
    async with open_store(store_url, clock=clock) as store, engine_on(store, settings) as engine:
        refused = await engine.run(blocked)  # the dead engine's $0.60 still counts...
        clock.advance(LEASE_S)
        passed = await engine.run(blocked)  # ...until its lease ran out

    assert "held by calls in flight $0.60" in (refused.steps["s0"].error or "")
    assert passed.status == "succeeded"
