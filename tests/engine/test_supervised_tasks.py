"""The engine's tasks are supervised: kept, named, failures logged, cancelled and awaited on
shutdown; a background duty's unexpected exception stops the engine instead of dying alone."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from steplib import make_workflow
from structlog.testing import capture_logs

from podium.api.app import create_app
from podium.bus.base import Bus
from podium.control.plane import ControlPlane
from podium.engine.engine import Engine
from podium.errors import EngineStopped
from podium.settings import Settings
from podium.store.base import Store
from podium.supervisor import Supervisor


@pytest.fixture(autouse=True)
def _restore_tick() -> Iterator[None]:
    tick = ControlPlane.tick
    yield
    ControlPlane.tick = tick  # type: ignore[method-assign]


async def test_the_supervisor_names_logs_and_closes_its_tasks() -> None:
    fatal: list[tuple[str, BaseException]] = []
    tasks = Supervisor("unit", on_fatal=lambda name, exc: fatal.append((name, exc)))
    cancelled = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def boom() -> None:
        raise KeyError("lost")

    with capture_logs() as logs:
        waiting = tasks.start(forever(), name="forever")
        tasks.start(boom(), name="boom", critical=True)
        await asyncio.sleep(0.01)
    assert waiting.get_name() == "unit:forever" and len(tasks) == 1
    assert [(n, type(e)) for n, e in fatal] == [("unit:boom", KeyError)]
    (logged,) = logs
    assert logged["task"] == "unit:boom" and logged["log_level"] == "error"
    assert isinstance(logged["exc_info"], KeyError)  # rendered with its traceback

    await tasks.close()
    assert cancelled.is_set() and waiting.cancelled() and len(tasks) == 0


async def test_closing_leaves_behind_a_task_that_ignores_its_cancel_and_says_where() -> None:
    tasks = Supervisor("unit")
    release = asyncio.get_running_loop().create_future()

    async def stubborn() -> None:
        try:
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            await release  # swallows the cancel and goes on waiting

    task = tasks.start(stubborn(), name="stubborn")
    await asyncio.sleep(0)  # let it reach its first wait
    with capture_logs() as logs:
        await tasks.close(grace_s=0)
    assert len(tasks) == 0 and not task.done()
    [entry] = [e for e in logs if e["event"].startswith("a task did not end")]
    assert entry["task"] == "unit:stubborn" and "stubborn" in entry["waiting_in"]
    release.set_result(None)
    await task


async def test_a_failing_background_duty_stops_the_engine(store: Store, bus: Bus) -> None:
    settings = Settings(poll_interval_s=0.02, lease_s=5, store_retry_s=0.5)
    engine = Engine(store, bus, settings)
    await engine.__aenter__()
    try:
        run_id = await engine.submit(make_workflow({"a": {"kind": "sim", "latency": "30s"}}))
        assert engine.failure is None

        async def broken(self: ControlPlane) -> None:
            raise ZeroDivisionError("upkeep divided by zero")

        ControlPlane.tick = broken  # type: ignore[method-assign]
        with pytest.raises(EngineStopped, match="tick-control failed with ZeroDivisionError"):
            await asyncio.wait_for(engine.wait_done(run_id), 5)
        assert engine.halted.is_set()
        assert isinstance(engine.failure, EngineStopped)

        app = create_app(engine)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
            health = await c.get("/healthz")
        assert health.status_code == 503
        assert "background duty" in health.json()["reason"]
    finally:
        with pytest.raises(EngineStopped):
            await engine.__aexit__(None, None, None)
    # The run stays unfinished in the store: a restart recovers it.
    row = await store.get_run(run_id)
    assert row is not None and not row.done


async def test_the_compensation_task_is_cancelled_and_awaited_on_shutdown(
    store: Store, bus: Bus, settings: Settings,
) -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def slow_undo(*_: object) -> object:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        raise AssertionError("not reached")

    wf = make_workflow({
        "book": {"kind": "sim", "output": 1, "compensate": {"kind": "sim", "output": "undone"}},
        "fail": {"kind": "python", "call": "steplib:fail", "input": {"name": "fail"},
                 "needs": ["book"], "retry": {"attempts": 1}},
    })
    async with Engine(store, bus, settings) as engine:
        engine._executor.run_compensation = slow_undo  # type: ignore[method-assign]
        run_id = await engine.submit(wf)
        await asyncio.wait_for(started.wait(), 5)
        (task,) = [t for t in asyncio.all_tasks() if t.get_name().startswith("engine:compensate")]
        assert task.get_name() == f"engine:compensate:{run_id}"
    assert cancelled.is_set() and task.done() and task.cancelled()
