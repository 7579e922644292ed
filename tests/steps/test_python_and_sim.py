"""The python kind (async, sync in threads, isolated in a killable process) and the sim kind."""

from __future__ import annotations

import asyncio
import os
import time
from types import SimpleNamespace
from typing import Any

import pytest

from podium.clock import FakeClock
from podium.errors import NonRetryable, StepError
from podium.model.workflow import PythonAction, SimAction
from podium.steps import StepContext
from podium.steps.python import PythonRunner
from podium.steps.sim import SimRunner


def _ctx(attempt: int = 1, timeout_s: float = 5) -> StepContext:
    return StepContext(
        run_id="r1",
        step_id="s",
        attempt=attempt,
        index=None,
        item=None,
        idempotency_key="r1/s",
        inputs={},
        workflow="w",
        timeout_s=timeout_s,
    )


def pid(**_: Any) -> int:
    return os.getpid()


def wants_ctx(x: int, ctx: StepContext) -> dict[str, Any]:
    return {"x": x, "key": ctx.idempotency_key}


def sleeper(seconds: float) -> str:
    time.sleep(seconds)
    return "woke"


async def test_a_sync_function_runs_in_a_thread_of_this_process() -> None:
    action = PythonAction(kind="python", call=f"{__name__}:pid")
    result = await PythonRunner().run(action, _ctx(), None)  # type: ignore[arg-type]
    assert result.output == os.getpid()


async def test_an_isolated_function_runs_in_another_process() -> None:
    action = PythonAction(kind="python", call=f"{__name__}:pid", isolate="process")
    result = await PythonRunner().run(action, _ctx(), None)  # type: ignore[arg-type]
    assert result.output != os.getpid()


async def test_a_function_asking_for_ctx_gets_it() -> None:
    action = PythonAction(kind="python", call=f"{__name__}:wants_ctx", input={"x": 1})
    result = await PythonRunner().run(action, _ctx(), None)  # type: ignore[arg-type]
    assert result.output == {"x": 1, "key": "r1/s"}


async def test_an_unimportable_call_fails_without_retry_naming_the_worker_and_its_path() -> None:
    action = PythonAction(kind="python", call="no_such_module_xyz:fn")
    host: Any = SimpleNamespace(worker_id="box:42:abc")
    with pytest.raises(NonRetryable) as caught:
        await PythonRunner().run(action, _ctx(), host)
    message = str(caught.value)
    assert message.startswith("cannot import module 'no_such_module_xyz'")
    assert "at worker box:42:abc" in message and "sys.path (" in message
    assert len(message) < 800  # the path is summarised, however long it is


async def test_a_missing_function_is_not_retried_either() -> None:
    action = PythonAction(kind="python", call=f"{__name__}:no_such_function")
    host: Any = SimpleNamespace(worker_id="box:42:abc")
    with pytest.raises(NonRetryable, match="has no attribute 'no_such_function' at worker box"):
        await PythonRunner().run(action, _ctx(), host)


async def test_sim_fails_the_first_fail_times_attempts_then_succeeds() -> None:
    action = SimAction.model_validate(
        {
            "kind": "sim",
            "fail_times": 2,
            "output": {"ok": 1},
            "tokens": {"input": 5, "output": 7},
            "model": "m",
        }
    )
    for attempt in (1, 2):
        with pytest.raises(StepError, match="simulated failure"):
            await SimRunner().run(action, _ctx(attempt), None)  # type: ignore[arg-type]
    result = await SimRunner().run(action, _ctx(3), None)  # type: ignore[arg-type]
    assert (result.output, result.tokens_in, result.tokens_out, result.model) == (
        {"ok": 1},
        5,
        7,
        "m",
    )


async def test_sim_latency_distribution_is_seeded_and_bounded_below_by_zero() -> None:
    action = SimAction.model_validate(
        {"kind": "sim", "latency": {"p50": "1ms", "p99": "5ms"}, "seed": 3}
    )
    clock = FakeClock()
    host: Any = SimpleNamespace(clock=clock)
    run = asyncio.ensure_future(SimRunner().run(action, _ctx(), host))
    await clock.settle()
    assert not run.done() and clock.sleepers == 1  # the latency is slept on the host's clock
    deadline = clock.next_deadline()
    assert deadline is not None and 0 < deadline <= 0.5
    clock.advance(deadline)
    await run
