"""`podium scheduler` says when it fires: the scheduler tells its caller of every run a tick
submitted, and the CLI prints one line for it."""

from __future__ import annotations

import time
from typing import Any

import pytest
from schedule_steps import make_schedule

from podium.cli.schedule import _say_fired
from podium.control.schedules import parse_spec
from podium.engine.engine import Engine
from podium.engine.scheduler import Scheduler


async def test_each_fire_is_told_once_with_schedule_tick_and_run(
    engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    now = time.time()
    spec = parse_spec("every", "1h", now=now)
    schedule = make_schedule(spec, name="nightly", next_at=now - 1)
    await engine.store.add_schedule(schedule)
    fired: list[dict[str, Any]] = []
    scheduler = Scheduler(engine, on_fired=fired.append)
    [run_id] = await scheduler.tick(now)
    assert await scheduler.tick(now) == []  # the tick is taken: nothing more to tell
    assert [(f["schedule"], f["run_id"]) for f in fired] == [("nightly", run_id)]
    await engine.wait_done(run_id)

    _say_fired(fired[0])
    line = capsys.readouterr().err.strip()
    assert line == f"schedule nightly fired (tick {fired[0]['tick']}): run {run_id}"
