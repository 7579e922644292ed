"""Retention on both stores: which finished runs `podium gc` deletes and which it keeps, bounded
batches, the audit chain pruned behind an anchor that `verify` starts from.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from podium.clock import FakeClock
from podium.control.retention import Policy, collect
from podium.events import Event
from podium.store import Batch, DlqEntry, RunState, StepState, Store, open_store
from podium.store.audit import verify
from podium.store.records import AuditEntry

DAY = 86400.0


def raw(url: str, sql: str, params: tuple[Any, ...] = ()) -> None:
    """SQL on the store's tables behind podium's back, as an attacker with access would run."""
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
            db.execute(sql.replace("%s", "?"), params)
        return
    base, schema = url.split("?schema=")
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"SET search_path TO {schema}")
        conn.execute(sql, params)


def old_run(
    run_id: str, clock: FakeClock, *, age_days: float = 40, status: str = "succeeded", **fields: Any
) -> RunState:
    finished = clock.now() - age_days * DAY
    return RunState(
        run_id=run_id, workflow="wf", workflow_version="1", definition_digest="d1",
        inputs={}, status=status, created_at=finished - 10, started_at=finished - 9,
        finished_at=None if status in ("queued", "running") else finished, **fields,
    )


async def seed(store: Store, *runs: RunState, steps_per_run: int = 2) -> None:
    batch = Batch(definitions={"d1": b'{"name": "wf"}'})
    for run in runs:
        batch.runs[run.run_id] = run
        for i in range(steps_per_run):
            step = StepState(run.run_id, f"s{i}", status="succeeded")
            batch.steps[step.key] = step
        batch.events.append(Event("run.queued", run.run_id, {}, timestamp=run.created_at))
    await store.write(batch)


async def exists(store: Store, run_id: str) -> bool:
    return await store.get_run(run_id) is not None


async def test_old_finished_runs_go_with_their_rows_and_the_rest_stays(
    clocked_store: Store, clock: FakeClock
) -> None:
    store = clocked_store
    await seed(
        store,
        old_run("old-ok", clock), old_run("old-failed", clock, status="failed"),
        old_run("recent", clock, age_days=5), old_run("old-running", clock, status="running"),
        old_run("old-queued", clock, status="queued"),
    )
    await store.add_signal("old-ok", "go", {"x": 1})
    events_before = len(await store.list_events())

    report = await collect(store, Policy(runs_s=30 * DAY), clock)

    assert (report.runs, report.steps, report.signals, report.events) == (2, 4, 1, 0)
    assert not await exists(store, "old-ok") and not await exists(store, "old-failed")
    assert await store.get_steps("old-ok") == []
    assert await store.pending_signals(["old-ok"]) == []
    for kept in ("recent", "old-running", "old-queued"):
        assert await exists(store, kept)
        assert len(await store.get_steps(kept)) == 2
    # The event log is the audit chain: gc keeps it whole, and it still verifies.
    assert len(await store.list_events()) == events_before
    assert (await verify(_entries(store), await store.audit_head())).ok


async def test_dead_lettered_runs_stay_unless_included(
    clocked_store: Store, clock: FakeClock
) -> None:
    store = clocked_store
    await seed(store, old_run("dead", clock, status="failed"))
    entry = DlqEntry("dead", "wf", "failed", "boom", ("s0",), clock.now() - 40 * DAY)
    await store.write(Batch(dlq_add=[entry]))

    assert (await collect(store, Policy(runs_s=30 * DAY), clock)).runs == 0
    assert await exists(store, "dead") and await store.get_dlq("dead") is not None

    report = await collect(store, Policy(runs_s=30 * DAY, include_dlq=True), clock)
    assert (report.runs, report.dlq) == (1, 1)
    assert not await exists(store, "dead") and await store.get_dlq("dead") is None


async def test_parents_and_children_of_unfinished_runs_stay(
    clocked_store: Store, clock: FakeClock
) -> None:
    store = clocked_store
    await seed(
        store,
        old_run("parent-running", clock, status="running"),
        old_run("child-done", clock, parent_run_id="parent-running"),
        old_run("parent-done", clock),
        old_run("child-running", clock, status="running", parent_run_id="parent-done"),
        old_run("parent-gone", clock),
        old_run("child-of-gone", clock, parent_run_id="parent-gone"),
    )

    report = await collect(store, Policy(runs_s=30 * DAY), clock)

    assert report.runs == 2  # parent-gone and its finished child
    assert await exists(store, "child-done") and await exists(store, "parent-done")
    assert not await exists(store, "parent-gone") and not await exists(store, "child-of-gone")


async def test_a_run_under_a_live_lease_stays(clocked_store: Store, clock: FakeClock) -> None:
    # A dead-lettered run being replayed is claimed while still final.
    store = clocked_store
    await seed(store, old_run("replaying", clock, owner="e1", lease_until=clock.now() + 30))
    assert (await collect(store, Policy(runs_s=30 * DAY), clock)).runs == 0
    clock.advance(31)
    assert (await collect(store, Policy(runs_s=30 * DAY), clock)).runs == 1


async def test_each_call_deletes_at_most_one_batch(clocked_store: Store, clock: FakeClock) -> None:
    store = clocked_store
    await seed(store, *(old_run(f"r{i:02}", clock, age_days=40 + i / 100) for i in range(23)))
    before = clock.now() - 30 * DAY

    first = await store.delete_finished_runs(before, 10)
    assert (first.runs, first.steps) == (10, 20)
    assert len(await store.list_runs(limit=100)) == 13
    # The oldest go first: r22 was created earliest.
    assert not await exists(store, "r22") and await exists(store, "r00")

    report = await collect(store, Policy(runs_s=30 * DAY, batch=10), clock)
    assert (report.runs, report.batches) == (13, 2)
    assert await store.list_runs(limit=100) == []


async def test_a_dry_run_counts_and_deletes_nothing(clocked_store: Store, clock: FakeClock) -> None:
    store = clocked_store
    await seed(store, old_run("a", clock), old_run("b", clock), old_run("c", clock, age_days=1))
    report = await collect(store, Policy(runs_s=30 * DAY, audit_s=30 * DAY), clock, dry_run=True)
    assert (report.runs, report.steps, report.events) == (2, 4, 2)
    assert len(await store.list_runs()) == 3
    assert len(await store.list_events()) == 3


async def _entries(store: Store) -> AsyncIterator[AuditEntry]:
    after = 0
    while page := await store.audit_entries(after, 4):
        for entry in page:
            yield entry
        after = page[-1].seq


async def _verdict(store: Store) -> Any:
    return await verify(_entries(store), await store.audit_head(), await store.audit_anchor())


async def _log(store: Store, stamps: list[float]) -> None:
    for i, ts in enumerate(stamps):
        await store.write(Batch(events=[Event("run.queued", f"r{i}", {"i": i}, timestamp=ts)]))


async def test_pruning_the_audit_start_leaves_an_anchor_verify_starts_from(
    clocked_store: Store, clock: FakeClock
) -> None:
    store = clocked_store
    now = clock.now()
    await _log(store, [now - 500 * DAY] * 7 + [now - 10 * DAY] * 3)
    seventh = (await store.audit_entries(6, 1))[0]

    report = await collect(store, Policy(runs_s=None, audit_s=400 * DAY, batch=3), clock)

    assert (report.events, report.batches) == (7, 3)
    anchor = await store.audit_anchor()
    assert (anchor.seq, anchor.hash) == (seventh.seq, seventh.hash)
    kept = [e async for e in _entries(store)]
    assert len(kept) == 3 and kept[0].prev_hash == anchor.hash
    verdict = await _verdict(store)
    assert verdict.ok and verdict.checked == 3
    # Without the anchor the chain looks cut: the anchor is what makes it verify.
    assert not (await verify(_entries(store), await store.audit_head())).ok


async def test_the_prune_stops_at_the_first_young_entry(
    clocked_store: Store, clock: FakeClock
) -> None:
    # An old entry after a young one stays: what is left is one unbroken chain.
    store = clocked_store
    now = clock.now()
    await _log(store, [now - 500 * DAY, now - 1 * DAY, now - 500 * DAY])
    assert (await collect(store, Policy(runs_s=None, audit_s=400 * DAY), clock)).events == 1
    assert [e.seq for e in await store.audit_entries()] == [2, 3]
    assert (await _verdict(store)).ok


async def test_a_kept_entry_edited_after_a_prune_is_found(
    clocked_store: Store, clock: FakeClock, store_url: str
) -> None:
    store = clocked_store
    now = clock.now()
    await _log(store, [now - 500 * DAY] * 4 + [now] * 3)
    await collect(store, Policy(runs_s=None, audit_s=400 * DAY), clock)
    assert (await _verdict(store)).ok

    raw(store_url, "UPDATE events SET event_type = 'run.cancelled' WHERE seq = %s", (6,))

    verdict = await _verdict(store)
    assert not verdict.ok and verdict.bad_seq == 6 and "edited" in (verdict.problem or "")


async def test_deleting_past_the_anchor_is_found(
    clocked_store: Store, clock: FakeClock, store_url: str
) -> None:
    store = clocked_store
    now = clock.now()
    await _log(store, [now - 500 * DAY] * 2 + [now] * 3)
    await collect(store, Policy(runs_s=None, audit_s=400 * DAY), clock)

    raw(store_url, "DELETE FROM events WHERE seq = %s", (3,))  # the first kept entry

    verdict = await _verdict(store)
    assert not verdict.ok and verdict.bad_seq == 4


async def test_one_process_at_a_time_has_the_gc_turn(store_url: str) -> None:
    async with open_store(store_url) as one, open_store(store_url) as two:
        async with one.exclusive("gc") as first, two.exclusive("gc") as second:
            pass
        async with two.exclusive("gc") as again:
            pass
    assert first and again
    # SQLite serializes every write itself: both get a turn there.
    assert second is store_url.startswith("sqlite")


@pytest.mark.parametrize("status", ["succeeded", "cancelled", "timed_out", "expired"])
async def test_every_final_status_goes(clocked_store: Store, clock: FakeClock, status: str) -> None:
    await seed(clocked_store, old_run("r", clock, status=status))
    assert (await collect(clocked_store, Policy(runs_s=30 * DAY), clock)).runs == 1
