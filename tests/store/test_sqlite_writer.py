"""Every SQLite write runs on the store's writer thread, never on the event loop's.

A write waiting for SQLite's lock (another process committing) would otherwise stall the loop.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from podium.events import Event
from podium.store.pools import ShareRequest
from podium.store.records import ApiKeyRecord, Batch, RegisteredWorkflow, RunState, WorkerInfo
from podium.store.schedules import Schedule
from podium.store.spend import BudgetHold, WindowScope
from podium.store.sqlite import SQLiteStore

_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "BEGIN", "CREATE", "ALTER")


class _TracedStore(SQLiteStore):
    """Records the thread of every statement its connections run (the trace callback runs
    on the thread that steps the statement)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.statements: list[tuple[int, str]] = []

    def _connect(self) -> sqlite3.Connection:
        db = super()._connect()
        db.set_trace_callback(lambda sql: self.statements.append((threading.get_ident(), sql)))
        return db


def _audit(action: str) -> Event:
    return Event(event_type=f"audit.{action}", correlation_id="", payload={}, source="test")


async def _exercise(store: SQLiteStore) -> None:
    """Calls every method of the store that writes."""
    now = time.time()
    run = RunState(
        run_id="r1", workflow="wf", workflow_version="1", definition_digest="d1",
        inputs={}, created_at=now,
    )
    await store.write(Batch(definitions={"d1": b"{}"}, runs={"r1": run}, owner="me"))
    await store.claim_unfinished("me", 30.0)
    await store.claim_for_replay("me", 30.0, "r1")
    await store.renew_leases("me", 30.0)
    await store.release_leases("me")
    await store.heartbeat(WorkerInfo("w1", "host", 1, 4, 0, "running", now, now))
    await store.cache_put("k", {"v": 1}, 60.0)
    await store.set_paused("workflow", "wf", True, audit=_audit("pause"))
    await store.add_signal("r1", "go", {}, audit=_audit("signal"))
    await store.request_cancel("r1", audit=_audit("cancel"))
    await store.purge_dlq(audit=_audit("purge"))
    await store.circuit_failure("c", failures=1, cooldown_s=0.0)
    await store.take_circuit_trial("c", cooldown_s=0.0, half_open_max=1, lease_s=5.0)
    await store.release_circuit_trial("c")
    await store.circuit_success("c", successes=1, trial=True)
    await store.force_circuit("c", open_=True, audit=_audit("circuit"))
    schedule = Schedule(
        schedule_id="s1", name="s", workflow="wf", definition={}, inputs={}, kind="every",
        spec="1m", timezone="UTC", next_at=now, created_at=now,
    )
    await store.add_schedule(schedule, audit=_audit("schedule"))
    await store.claim_schedule_tick("s1", now, now + 60, now)
    await store.reclaim_schedule_tick("s1", now, now, now + 1)
    await store.finish_schedule_tick("s1", now, "r1", now + 1)
    await store.remove_schedule("s1", audit=_audit("unschedule"))
    hold = BudgetHold("h1", "r1", "wf", 0.1, "me", now + 60)
    await store.hold_budget(hold, [WindowScope("global/hourly", 10.0, 3600.0)])
    await store.renew_budget_holds("me", now + 120)
    await store.release_budget_holds(["h1"])
    await store.set_shares("me", [ShareRequest("p", 1.0, 1.0, 0.0, 4.0)], 30.0)
    await store.renew_shares("me", 30.0)
    await store.drop_shares("me")
    await store.take_tokens("b", 1.0, 5.0, 1.0)
    await store.add_key(ApiKeyRecord("k1", "key", "admin", None, "x", now), _audit("key"))
    await store.revoke_key("k1", now, _audit("revoke"))
    registered = RegisteredWorkflow("wf", "1", "d2", now, "test")
    await store.register_workflow(registered, b"{}", _audit("register"))
    await store.append_audit([_audit("refused")])


async def test_no_write_runs_on_the_event_loop_thread(tmp_path: Path) -> None:
    store = _TracedStore(str(tmp_path / "podium.db"))
    loop_thread = threading.get_ident()
    async with store:
        await _exercise(store)
    writes = [(t, sql) for t, sql in store.statements if sql.lstrip().upper().startswith(_WRITES)]
    on_loop = [sql for t, sql in writes if t == loop_thread]
    assert len(writes) > 50  # the trace saw the migrations and the methods' writes
    assert on_loop == []
