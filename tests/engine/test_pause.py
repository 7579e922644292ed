"""Pausing a workflow or an agent stops new steps from starting; resuming lets them go."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator

import pytest
import steplib
from clocklib import advance_until, step_through
from steplib import make_workflow

from podium.clock import FakeClock
from podium.engine.engine import Engine
from podium.errors import PodiumError
from podium.store.base import Store


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    steplib.reset()
    yield


AGENTS = {"flaky-api": {"kind": "python", "call": "steplib:ok"}}


def _workflow() -> object:
    return make_workflow(
        {
            "first": {"kind": "python", "call": "steplib:ok", "input": {"name": "first"}},
            "second": {"agent": "flaky-api", "needs": ["first"], "input": {"name": "second"}},
            "each": {
                "agent": "flaky-api",
                "needs": ["first"],
                "for_each": [1, 2, 3],
                "max_parallel": 1,
                "input": {"name": "each-{{ item }}"},
            },
        },
        agents=AGENTS,
    )


async def _wait_for(engine: Engine, run_id: str, step: str, status: str) -> None:
    for _ in range(500):
        if (await engine.summary(run_id)).steps[step].status == status:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{step} never became {status}")


async def test_a_paused_agent_holds_its_steps_until_it_is_resumed(engine: Engine) -> None:
    assert await engine.pause("agent", "flaky-api") is True
    run_id = await engine.submit(_workflow())  # type: ignore[arg-type]
    await _wait_for(engine, run_id, "second", "ready")
    await asyncio.sleep(0.1)
    assert "second" not in steplib.CALLS and steplib.CALLS == {"first": 1}
    await engine.pause("agent", "flaky-api", paused=False)
    summary = await asyncio.wait_for(engine.wait(run_id), 10)
    assert summary.status == "succeeded"
    assert [o["name"] for o in summary.steps["each"].output] == ["each-1", "each-2", "each-3"]


async def test_a_pause_written_by_another_process_is_picked_up(
    clocked_engine: Engine, clock: FakeClock
) -> None:
    engine, store = clocked_engine, clocked_engine.store
    await store.set_paused("workflow", "test-wf", True)  # as `podium pause` does
    await step_through(clock, engine.settings.poll_interval_s, 0.01)  # one poll: it is seen
    run_id = await engine.submit(_workflow())  # type: ignore[arg-type]
    await _wait_for(engine, run_id, "first", "ready")
    await store.set_paused("workflow", "test-wf", False)
    done = asyncio.ensure_future(engine.wait(run_id))
    await advance_until(clock, done.done, 0.01)
    assert (await done).status == "succeeded"


async def test_cancelling_a_run_with_held_steps_ends_it(engine: Engine) -> None:
    await engine.pause("agent", "flaky-api")
    run_id = await engine.submit(_workflow())  # type: ignore[arg-type]
    await _wait_for(engine, run_id, "second", "ready")
    await engine.cancel(run_id)
    summary = await asyncio.wait_for(engine.wait(run_id), 10)
    assert summary.status == "cancelled"
    assert summary.steps["second"].status == "cancelled"
    await engine.pause("agent", "flaky-api", paused=False)


async def test_only_workflows_and_agents_can_be_paused(engine: Engine) -> None:
    with pytest.raises(PodiumError, match="workflow or an agent"):
        await engine.pause("kind", "python")


async def test_the_cli_pauses_and_resumes_through_the_store(store: Store, store_url: str) -> None:
    async def cli(*args: str) -> int:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "podium.cli.app",
            *args,
            "--store",
            store_url,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        return await proc.wait()

    assert await cli("pause", "agent", "flaky-api") == 0
    assert await store.list_paused() == [("agent", "flaky-api")]
    assert await cli("resume", "agent", "flaky-api") == 0
    assert await store.list_paused() == []
    assert await cli("pause", "kind", "python") == 2
