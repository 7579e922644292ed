"""A failed step keeps its exception type and traceback (masked) in the store, the summary,
the `agent.task.failed` event and the log; store errors are retried only when transient."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import psycopg
import pytest
from clocklib import advance_until
from steplib import make_workflow
from structlog.testing import capture_logs

from podium.bus.base import Bus
from podium.clock import FakeClock
from podium.engine.engine import Engine
from podium.errors import StoreError, StoreUnavailable
from podium.settings import Settings
from podium.store import postgres as pg_store
from podium.store import sqlite as sqlite_store
from podium.store.base import Store
from podium.store.records import Batch, RunState

SECRET = "s3cr3t"  # the conftest engine's PODIUM_TEST_SECRET


def step(fn: str, **inp: object) -> dict[str, object]:
    return {"kind": "python", "call": f"faillib:{fn}", "input": inp, "retry": {"attempts": 1}}


async def test_a_failure_in_a_helper_keeps_its_type_and_traceback(engine: Engine) -> None:
    wf = make_workflow({"order": step("parse_order", amount="twelve")})
    with capture_logs() as logs:
        summary = await engine.run(wf)

    detail = summary.steps["order"]
    assert summary.status == "failed" and detail.status == "failed"
    assert detail.error_type == "ValueError"
    assert detail.error and "could not convert string to float" in detail.error
    tb = detail.traceback or ""
    assert "in _parse_amount" in tb and "in parse_order" in tb  # the helper, by name
    assert tb.rstrip().endswith("ValueError: could not convert string to float: 'twelve'")
    assert "podium/engine" not in tb and "asyncio" not in tb  # the step author's frames only

    (stored,) = await engine.store.get_steps(summary.run_id)
    assert (stored.error_type, stored.traceback) == ("ValueError", tb)

    events = [e for _, e in await engine.store.list_events(summary.run_id)]
    (failed,) = [e for e in events if e.event_type == "agent.task.failed"]
    assert failed.payload["error_type"] == "ValueError"
    assert failed.payload["traceback"] == tb

    (logged,) = [e for e in logs if e["event"] == "step failed"]
    assert logged["log_level"] == "warning"
    assert logged["error_type"] == "ValueError" and "in _parse_amount" in logged["traceback"]


async def test_a_secret_in_the_message_and_the_traceback_is_masked(engine: Engine) -> None:
    wf = make_workflow({"call": step("call_service", token="{{ secrets.PODIUM_TEST_SECRET }}")})
    with capture_logs() as logs:
        summary = await engine.run(wf)

    detail = summary.steps["call"]
    assert detail.error_type == "RuntimeError"
    assert detail.error == "RuntimeError: the service refused ***"
    tb = detail.traceback or ""
    # The cause's message is only in the traceback: masked there too.
    assert "PermissionError: token *** was rejected" in tb and "in _login" in tb
    events = [e for _, e in await engine.store.list_events(summary.run_id)]
    stored = await engine.store.get_steps(summary.run_id)
    everything = repr((summary.model_dump(), [e.payload for e in events], stored, logs))
    assert SECRET not in everything


async def test_a_retried_step_keeps_the_last_failure_and_a_success_clears_it(
    engine: Engine,
) -> None:
    wf = make_workflow({
        "bad": {**step("parse_order", amount="x"), "retry": {"attempts": 2, "backoff": "1ms"}},
        "good": {"kind": "sim", "output": 1},
    })
    summary = await engine.run(wf)
    assert summary.steps["bad"].attempts == 2
    assert summary.steps["bad"].error_type == "ValueError"
    assert summary.steps["good"].error_type is None and summary.steps["good"].traceback is None


async def test_a_timeout_is_named_without_a_traceback(engine: Engine) -> None:
    wf = make_workflow({"slow": {"kind": "sim", "latency": "2s", "timeout": "50ms",
                                 "retry": {"attempts": 1}}})
    summary = await engine.run(wf)
    assert summary.steps["slow"].error_type == "StepTimedOut"
    assert summary.steps["slow"].traceback is None


# -- store errors: transient ones are retried by the journal, permanent ones are not ---------


class FailingWrites:
    """A store whose next `failures` batch writes raise `error`; everything else is real."""

    def __init__(self, store: Store, error: Exception, failures: int) -> None:
        self._store, self._error, self.failures, self.writes = store, error, failures, 0

    async def write(self, batch: Batch) -> set[str]:
        self.writes += 1
        if self.failures > 0:
            self.failures -= 1
            raise self._error
        return await self._store.write(batch)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


async def test_a_permanent_store_error_is_not_retried(store: Store, bus: Bus) -> None:
    failing = FailingWrites(store, StoreError("cannot write: UNIQUE constraint failed"), 100)
    settings = Settings(poll_interval_s=0.02, lease_s=5, store_retry_s=30)
    async with Engine(failing, bus, settings) as engine:  # type: ignore[arg-type]
        with pytest.raises(StoreError, match="UNIQUE constraint"):
            await engine.submit(make_workflow({"a": {"kind": "sim", "output": 1}}))
        assert isinstance(engine.journal.failure, StoreError)
    assert failing.writes == 1  # the journal gave up at once


async def test_a_transient_store_error_is_retried_until_the_write_goes_in(
    clocked_store: Store, clock: FakeClock, bus: Bus,
) -> None:
    failing = FailingWrites(
        clocked_store, StoreUnavailable("cannot write: database is locked"), 2
    )
    settings = Settings(poll_interval_s=0.02, lease_s=5, store_retry_s=30)
    async with Engine(failing, bus, settings) as engine:  # type: ignore[arg-type]
        run = asyncio.ensure_future(engine.run(make_workflow({"a": {"kind": "sim", "output": 1}})))
        await advance_until(clock, run.done, 0.05)
        summary = await run
        assert summary.status == "succeeded"
        assert engine.journal.failure is None
    assert failing.writes >= 3


async def test_a_transient_store_error_past_the_retry_window_stops_the_engine(
    clocked_store: Store, clock: FakeClock, bus: Bus,
) -> None:
    failing = FailingWrites(
        clocked_store, StoreUnavailable("cannot write: connection lost"), 1000
    )
    settings = Settings(poll_interval_s=0.02, lease_s=5, store_retry_s=0.5)
    async with Engine(failing, bus, settings) as engine:  # type: ignore[arg-type]
        submit = asyncio.ensure_future(engine.submit(make_workflow({"a": {"kind": "sim"}})))
        await advance_until(clock, submit.done, 0.05)
        with pytest.raises(StoreUnavailable):
            await submit
    assert failing.writes > 1


async def test_a_real_constraint_violation_is_permanent(store: Store) -> None:
    bad: Any = None  # runs.workflow is NOT NULL in both schemas
    run = RunState("r1", bad, "1", "d", {})
    with pytest.raises(StoreError) as caught:
        await store.write(Batch(runs={"r1": run}))
    assert not isinstance(caught.value, StoreUnavailable)
    assert "not retried" in str(caught.value)


def test_each_store_classifies_its_errors_once() -> None:
    busy = sqlite3.OperationalError("database is locked")
    locked = sqlite_store._store_error("cannot write", busy)
    assert isinstance(locked, StoreUnavailable)
    integrity = sqlite_store._store_error("cannot write", sqlite3.IntegrityError("UNIQUE failed"))
    assert type(integrity) is StoreError and "IntegrityError" in str(integrity)
    no_table = sqlite_store._store_error("cannot read", sqlite3.OperationalError("no such table"))
    assert type(no_table) is StoreError

    assert pg_store._transient(psycopg.errors.SerializationFailure())
    assert pg_store._transient(psycopg.errors.DeadlockDetected())
    assert pg_store._transient(psycopg.OperationalError("connection lost"))
    assert not pg_store._transient(psycopg.errors.UniqueViolation())
    assert not pg_store._transient(psycopg.errors.InvalidPassword())
    assert not pg_store._transient(psycopg.errors.UndefinedTable())


async def test_a_missing_definition_is_a_permanent_error(store: Store) -> None:
    with pytest.raises(StoreError, match="no workflow definition nope") as caught:
        await store.get_definition("nope")
    assert not isinstance(caught.value, StoreUnavailable)
