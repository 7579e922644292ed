"""Signals and time waits, child workflows, the event envelope, output size limits."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import steplib
from clocklib import advance_until, eventually
from steplib import make_workflow

from podium.bus.base import Bus
from podium.clock import FakeClock
from podium.engine.engine import Engine
from podium.errors import PodiumError, RunFinished, RunNotFound
from podium.settings import Settings
from podium.store.base import Store


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    steplib.reset()
    yield


APPROVAL = make_workflow(
    {
        "draft": {"kind": "sim", "output": {"text": "hello"}},
        "approve": {"kind": "wait", "signal": "approval", "needs": ["draft"], "timeout": "5s"},
        "publish": {
            "kind": "python",
            "call": "steplib:echo",
            "needs": ["approve"],
            "input": {"ok": "{{ steps.approve.output.ok }}"},
        },
    }
)


async def waiting_for_approval(engine: Engine, run_id: str) -> bool:
    return (await engine.summary(run_id)).steps["approve"].status == "running"


async def test_a_wait_step_resumes_with_the_signal_payload(engine: Engine) -> None:
    run_id = await engine.submit(APPROVAL)
    while (await engine.summary(run_id)).steps["approve"].status != "running":
        await asyncio.sleep(0.01)
    await engine.signal(run_id, "approval", {"ok": True})
    summary = await engine.wait(run_id)
    assert summary.status == "succeeded"
    assert summary.steps["publish"].output == {"ok": True}


async def test_a_signal_sent_before_the_step_waits_is_kept_for_it(engine: Engine) -> None:
    wf = make_workflow(
        {
            "first": {"kind": "sim", "latency": "100ms"},
            "gate": {"kind": "wait", "needs": ["first"]},
        }
    )
    run_id = await engine.submit(wf)
    await engine.signal(run_id, "gate", {"early": 1})
    summary = await engine.wait(run_id)
    assert summary.steps["gate"].output == {"early": 1}


async def test_a_signal_from_another_process_is_picked_up_through_the_store(
    clocked_engine: Engine, clock: FakeClock
) -> None:
    engine = clocked_engine
    run_id = await engine.submit(APPROVAL)
    await eventually(lambda: waiting_for_approval(engine, run_id))
    # As `podium signal` does: into the store, where the engine's poll finds it.
    await engine.store.add_signal(run_id, "approval", {"ok": "external"})
    done = asyncio.ensure_future(engine.wait(run_id))
    await advance_until(clock, done.done, 0.01)
    assert (await done).steps["publish"].output == {"ok": "external"}


async def test_an_unanswered_wait_times_out_and_fails_the_step(engine: Engine) -> None:
    wf = make_workflow({"gate": {"kind": "wait", "timeout": "50ms", "retry": {"attempts": 1}}})
    summary = await engine.run(wf)
    assert summary.status == "failed"
    assert "timed out" in (summary.steps["gate"].error or "")


async def test_a_time_wait_sleeps_for_its_delay(
    clocked_engine: Engine, clock: FakeClock
) -> None:
    wf = make_workflow({"pause": {"kind": "wait", "delay": "150ms"}})
    started = clock.now()
    done = asyncio.ensure_future(clocked_engine.run(wf))
    await advance_until(clock, done.done, 0.01)
    assert (await done).status == "succeeded"
    assert clock.now() - started >= 0.15


async def test_signalling_a_finished_or_unknown_run_is_an_error(engine: Engine) -> None:
    summary = await engine.run(make_workflow({"a": {"kind": "sim"}}))
    with pytest.raises(RunFinished, match="already ended with status succeeded"):
        await engine.signal(summary.run_id, "x", None)
    with pytest.raises(RunNotFound):
        await engine.signal("nope", "x", None)


async def test_a_wait_survives_an_engine_restart(
    store: Store, bus: Bus, settings: Settings
) -> None:
    async with Engine(store, bus, settings) as first:
        run_id = await first.submit(APPROVAL)
        while (await first.summary(run_id)).steps["approve"].status != "running":
            await asyncio.sleep(0.01)
    async with Engine(store, bus, settings) as second:
        assert await second.recover() == [run_id]
        await second.signal(run_id, "approval", {"ok": "later"})
        summary = await second.wait(run_id)
    assert summary.steps["publish"].output == {"ok": "later"}
    assert summary.steps["draft"].attempts == 1


async def test_a_child_workflow_runs_as_a_child_run_and_returns_its_outputs(
    engine: Engine, store: Store
) -> None:
    child = make_workflow(
        {"x": {"kind": "python", "call": "steplib:echo", "input": {"got": "{{ inputs.n }}"}}},
        name="child",
        inputs={"n": {"type": "integer"}},
    )
    wf = make_workflow(
        {
            "call": {
                "kind": "workflow",
                "workflow": "child",
                "definition": child.to_json(),
                "input": {"n": 7},
            }
        }
    )
    summary = await engine.run(wf)
    assert summary.status == "succeeded"
    assert summary.steps["call"].output == {"x": {"got": 7}}
    children = await store.list_runs(workflow="child")
    assert len(children) == 1 and children[0].parent_run_id == summary.run_id


async def test_a_failed_child_fails_the_parent_step(engine: Engine) -> None:
    child = make_workflow(
        {"x": {"kind": "sim", "fail_times": 9, "retry": {"attempts": 1}}}, name="bad-child"
    )
    wf = make_workflow(
        {
            "call": {
                "kind": "workflow",
                "workflow": "bad-child",
                "definition": child.to_json(),
                "retry": {"attempts": 1},
            }
        }
    )
    summary = await engine.run(wf)
    assert summary.status == "failed"
    assert "ended failed" in (summary.steps["call"].error or "")


async def test_events_carry_the_envelope_and_are_committed_before_published(
    engine: Engine, store: Store, bus: Bus
) -> None:
    seen = []

    async def listen() -> None:
        async for event in bus.subscribe():
            stored = {e.event_id for _, e in await store.list_events(event.correlation_id)}
            seen.append((event, event.event_id in stored))
            if event.event_type == "run.completed":
                return

    listener = asyncio.create_task(listen())
    await asyncio.sleep(0)
    summary = await engine.run(
        make_workflow({"a": {"kind": "sim"}, "b": {"kind": "sim", "needs": ["a"]}})
    )
    await asyncio.wait_for(listener, 5)
    assert all(committed for _, committed in seen)
    types = [e.event_type for e, _ in seen]
    assert types == [
        "run.queued",
        "run.started",
        "agent.task.started",
        "agent.task.completed",
        "agent.task.started",
        "agent.task.completed",
        "run.completed",
    ]
    envelope = seen[-1][0].to_json()
    assert set(envelope) == {
        "event_id",
        "event_type",
        "timestamp",
        "version",
        "correlation_id",
        "causation_id",
        "source",
        "priority",
        "payload",
        "actor",
    }
    assert envelope["correlation_id"] == summary.run_id
    assert envelope["causation_id"] == seen[-2][0].event_id
    assert envelope["timestamp"].endswith("Z")


async def test_a_twenty_megabyte_output_is_stored_and_read_back(engine: Engine) -> None:
    wf = make_workflow(
        {"a": {"kind": "python", "call": "steplib:big", "input": {"size": 20_000_000}}}
    )
    summary = await engine.run(wf)
    assert summary.status == "succeeded"
    assert len(summary.steps["a"].output["blob"]) == 20_000_000


async def test_an_output_over_the_maximum_fails_with_a_clear_error(store: Store, bus: Bus) -> None:
    async with Engine(store, bus, Settings(max_output_bytes=10_000)) as engine:
        wf = make_workflow(
            {
                "a": {
                    "kind": "python",
                    "call": "steplib:big",
                    "input": {"size": 1_000_000},
                    "retry": {"attempts": 3},
                }
            }
        )
        summary = await engine.run(wf)
    assert summary.status == "failed"
    assert "over the maximum of 10000" in (summary.steps["a"].error or "")
    assert summary.steps["a"].attempts == 1  # not retried: the same output would not fit either


async def test_a_run_keeps_the_definition_it_started_with(engine: Engine, store: Store) -> None:
    run_id = await engine.submit(APPROVAL)
    row = await store.get_run(run_id)
    assert row is not None
    assert await store.get_definition(row.definition_digest) == APPROVAL.to_json()
    await engine.cancel(run_id)
    await engine.wait(run_id)


async def test_a_run_id_is_never_submitted_twice(engine: Engine, store: Store) -> None:
    wf = make_workflow({"a": {"kind": "sim", "latency": 0, "output": {"first": True}}})
    run_id = await engine.submit(wf, run_id="run-fixed")
    assert (await engine.wait(run_id)).status == "succeeded"
    other = make_workflow({"b": {"kind": "sim", "latency": 0}}, name="other")
    with pytest.raises(PodiumError, match="run run-fixed exists already"):
        await engine.submit(other, run_id="run-fixed")
    row = await store.get_run("run-fixed")
    assert row is not None and row.workflow == "test-wf" and row.status == "succeeded"
    assert [s.step_id for s in await store.get_steps("run-fixed")] == ["a"]
