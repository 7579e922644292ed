"""The Store contract, run on every backend: atomic batches, round trips, leases, cancels.

The `store` fixture is parametrized over SQLite and PostgreSQL (see tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import base64
import random
import time
from dataclasses import asdict
from typing import Any

import pytest

from podium.errors import StoreError
from podium.events import Event
from podium.store import Batch, DlqEntry, RunState, StepState, Store, open_store
from podium.store.codec import decode, encode
from podium.store.records import WorkerInfo


def make_run(run_id: str, **fields: Any) -> RunState:
    return RunState(
        run_id=run_id,
        workflow=fields.pop("workflow", "wf"),
        workflow_version="1",
        definition_digest="digest-1",
        inputs=fields.pop("inputs", {"topic": "x"}),
        created_at=fields.pop("created_at", time.time()),
        **fields,
    )


def run_batch(*runs: RunState) -> Batch:
    return Batch(definitions={"digest-1": b'{"name": "wf"}'}, runs={r.run_id: r for r in runs})


async def test_a_batch_with_a_bad_row_leaves_nothing_behind(store: Store) -> None:
    batch = run_batch(make_run("r1"))
    step = StepState("r1", "a", status="succeeded", output_blob=encode({"v": 1}))
    batch.steps[step.key] = step
    batch.events.append(Event("run.queued", "r1", {"n": 1}))
    bad: Any = None  # NOT NULL in both schemas: the last statement of the batch fails
    batch.dlq_add.append(DlqEntry("r1", bad, "failed", None, (), time.time()))

    with pytest.raises(StoreError, match="cannot write"):
        await store.write(batch)

    assert await store.get_run("r1") is None
    assert await store.get_steps("r1") == []
    assert await store.list_events("r1") == []
    await store.write(run_batch(make_run("r2")))  # the store is still usable afterwards
    assert await store.get_run("r2") is not None


async def test_runs_steps_and_events_round_trip(store: Store) -> None:
    run = make_run(
        "r1",
        inputs={"topic": "ü", "n": [1, 2.5, None]},
        status="running",
        started_at=time.time(),
        error="boom",
        parent_run_id="p1",
        cost_usd=0.125,
        tokens_in=10,
        tokens_out=2**40,
        owner="me",
        lease_until=time.time() + 5,
        stopping="failed",
    )
    step = StepState(
        "r1", "fan", 3, "succeeded", 2, 1.5, 2.5, "err", True, 7, 9.5, "comp", 0.01, 1, 2
    )
    step.output_blob = encode({"text": "ok" * 5000})  # compressed form
    event = Event("agent.task.completed", "r1", {"step": "fan", "nested": {"a": [1]}}, "c-1")
    batch = run_batch(run)
    batch.steps[step.key] = step
    batch.events.append(event)
    await store.write(batch)

    got = await store.get_run("r1")
    assert got is not None and asdict(got) == asdict(run)
    [got_step] = await store.get_steps("r1")
    assert asdict(got_step) == asdict(step)
    assert decode(got_step.output_blob) == {"text": "ok" * 5000}
    assert [e for _, e in await store.list_events("r1")] == [event]
    assert await store.get_definition("digest-1") == {"name": "wf"}


async def test_a_later_write_updates_a_run_but_keeps_its_identity(store: Store) -> None:
    run = make_run("r1")
    await store.write(run_batch(run))
    run.status, run.finished_at, run.workflow = "succeeded", time.time(), "renamed"
    await store.write(Batch(runs={"r1": run}))

    got = await store.get_run("r1")
    assert got is not None
    assert (got.status, got.finished_at, got.workflow) == ("succeeded", run.finished_at, "wf")


async def test_events_page_by_sequence_and_filter_by_run(store: Store) -> None:
    events = [Event("step.done", f"r{i % 2}", {"i": i}) for i in range(5)]
    await store.write(Batch(events=events))

    first = await store.list_events(limit=2)
    rest = await store.list_events(after_seq=first[-1][0])
    assert [e for _, e in first + rest] == events
    assert [e.payload["i"] for _, e in await store.list_events("r1")] == [1, 3]


async def test_runs_list_newest_first_filtered_by_status_and_workflow(store: Store) -> None:
    now = time.time()
    runs = [
        make_run("a", created_at=now, status="succeeded"),
        make_run("b", created_at=now + 1, status="failed"),
        make_run("c", created_at=now + 2, workflow="other"),
    ]
    await store.write(run_batch(*runs))

    assert [r.run_id for r in await store.list_runs()] == ["c", "b", "a"]
    assert [r.run_id for r in await store.list_runs(limit=1)] == ["c"]
    statuses = ["succeeded", "failed"]
    assert [r.run_id for r in await store.list_runs(statuses=statuses)] == ["b", "a"]
    assert [r.run_id for r in await store.list_runs(workflow="other")] == ["c"]


async def test_a_missing_definition_is_a_clear_error(store: Store) -> None:
    with pytest.raises(StoreError, match="no workflow definition nope"):
        await store.get_definition("nope")


async def test_dead_letters_are_added_replaced_removed_and_purged(store: Store) -> None:
    now = time.time()
    first = DlqEntry("r1", "wf", "failed", "boom", ("a", "b"), now)
    await store.write(Batch(dlq_add=[first, DlqEntry("r2", "wf", "expired", None, (), now + 1)]))
    assert await store.get_dlq("r1") == first
    assert [d.run_id for d in await store.list_dlq()] == ["r2", "r1"]

    again = DlqEntry("r1", "wf", "compensated", "again", ("c",), now + 2)
    await store.write(Batch(dlq_add=[again], dlq_remove=["r2"]))
    assert await store.list_dlq() == [again]
    assert await store.purge_dlq() == 1
    assert await store.list_dlq() == []


async def test_signals_stay_pending_until_a_batch_takes_them(store: Store) -> None:
    await store.add_signal("r1", "approval", {"ok": True})
    await store.add_signal("r2", "other", [1, "two"])
    await store.add_signal("r1", "late", None)

    pending = await store.pending_signals(["r1", "r2"])
    assert [(s.run_id, s.name, s.payload) for s in pending] == [
        ("r1", "approval", {"ok": True}),
        ("r2", "other", [1, "two"]),
        ("r1", "late", None),
    ]
    await store.write(Batch(signals_taken=[pending[0].signal_id]))
    assert [s.name for s in await store.pending_signals(["r1"])] == ["late"]
    assert await store.pending_signals([]) == []


async def test_a_claimed_run_goes_to_one_owner_until_its_lease_expires(store: Store) -> None:
    now = time.time()
    await store.write(
        run_batch(make_run("old", created_at=now), make_run("new", created_at=now + 1))
    )

    assert await store.claim_unfinished("a", 30) == ["old", "new"]
    assert await store.claim_unfinished("b", 30) == []
    assert await store.claim_unfinished("a", -1) == ["old", "new"]  # renewed, already expired
    assert await store.claim_unfinished("b", 30, ["new"]) == ["new"]
    got = await store.get_run("new")
    assert got is not None and got.owner == "b"


async def test_concurrent_claims_never_share_a_run(store: Store) -> None:
    now = time.time()
    await store.write(run_batch(*(make_run(f"r{i:02}", created_at=now + i) for i in range(40))))

    claims = await asyncio.gather(*(store.claim_unfinished(f"o{i}", 30) for i in range(4)))
    claimed = [run_id for claim in claims for run_id in claim]
    assert sorted(claimed) == [f"r{i:02}" for i in range(40)]


async def test_claims_go_by_priority_then_age_up_to_a_limit(store: Store) -> None:
    now = time.time()
    ranks = ["low", "normal", "critical", "high", "critical"]
    runs = [make_run(f"r{i}", priority=p, created_at=now + i) for i, p in enumerate(ranks)]
    await store.write(run_batch(*runs))

    assert await store.claim_unfinished("a", 30, limit=2) == ["r2", "r4"]
    assert await store.claim_unfinished("b", 30) == ["r3", "r1", "r0"]
    assert await store.claim_unfinished("b", 30, []) == []


async def test_only_a_finished_run_is_claimed_for_replay(store: Store) -> None:
    await store.write(run_batch(make_run("dead", status="failed", owner="x"), make_run("live")))

    assert await store.claim_for_replay("b", 30, "dead") is True
    assert await store.claim_for_replay("b", 30, "live") is False
    assert await store.claim_for_replay("b", 30, "missing") is False
    got = await store.get_run("dead")
    assert got is not None and got.owner == "b"


async def test_a_batch_skips_the_runs_its_engine_no_longer_holds(store: Store) -> None:
    past = time.time() - 1
    mine, theirs = make_run("mine", owner="a"), make_run("theirs", owner="a", lease_until=past)
    await store.write(run_batch(mine, theirs))
    assert await store.claim_unfinished("b", 30, ["theirs"]) == ["theirs"]

    batch = Batch(owner="a", runs={"mine": mine, "theirs": theirs, "new": make_run("new")})
    for run_id in ("mine", "theirs", "new"):
        step = StepState(run_id, "s", status="running")
        batch.steps[step.key] = step
        batch.events.append(Event("agent.task.started", run_id))
    batch.dlq_add.append(DlqEntry("theirs", "wf", "failed", None, (), time.time()))
    mine.status = theirs.status = "running"

    assert await store.write(batch) == {"theirs"}
    kept = await store.get_run("theirs")
    assert kept is not None and (kept.owner, kept.status) == ("b", "queued")
    assert await store.get_steps("theirs") == [] and await store.get_dlq("theirs") is None
    assert [e.correlation_id for _, e in await store.list_events()] == ["mine", "new"]
    written = await store.get_run("mine")
    assert written is not None and written.status == "running"
    assert await store.write(Batch(owner="a", runs={"mine": mine})) == set()


async def test_worker_heartbeats_replace_the_last_one(store: Store) -> None:
    first = WorkerInfo("w1", "host", 42, 8, 0, "running", 1.0, 2.0)
    await store.heartbeat(first)
    await store.heartbeat(WorkerInfo("w0", "host", 41, 4, 1, "running", 0.5, 2.0))
    later = WorkerInfo("w1", "host", 42, 8, 3, "draining", 1.0, 5.0)
    await store.heartbeat(later)

    assert [w.worker_id for w in await store.list_workers()] == ["w0", "w1"]
    assert (await store.list_workers())[1] == later


async def test_finished_runs_are_not_claimed_and_released_leases_are(store: Store) -> None:
    await store.write(run_batch(make_run("done", status="succeeded"), make_run("live")))
    assert await store.claim_unfinished("a", 30) == ["live"]
    await store.renew_leases("a", 60)
    got = await store.get_run("live")
    assert got is not None and got.lease_until is not None and got.lease_until > time.time() + 30

    await store.release_leases("a")
    assert await store.claim_unfinished("b", 30) == ["live"]


async def test_a_cancel_request_lasts_until_the_run_ends(store: Store) -> None:
    run = make_run("r1", status="running")
    await store.write(run_batch(run, make_run("r2")))
    await store.request_cancel("r1")
    assert await store.cancel_requests(["r1", "r2"]) == ["r1"]

    await store.write(Batch(runs={"r1": run}))  # still running: the request stays
    assert await store.cancel_requests(["r1"]) == ["r1"]
    run.status = "cancelled"
    await store.write(Batch(runs={"r1": run}))
    run.status = "queued"  # a replayed run starts without the old request
    await store.write(Batch(runs={"r1": run}))
    assert await store.cancel_requests(["r1"]) == []
    assert await store.cancel_requests([]) == []


async def test_opening_a_store_again_keeps_its_data(store: Store) -> None:
    await store.write(run_batch(make_run("r1")))
    for _ in range(2):
        async with open_store(store.url) as again:
            assert await again.get_run("r1") is not None


async def test_a_20_mb_compressed_output_round_trips(store: Store) -> None:
    # base64 of random bytes only compresses to about 3/4: the stored blob stays over 20 MB.
    text = base64.b64encode(random.Random(7).randbytes(20 * 2**20)).decode()
    step = StepState("r1", "big", status="succeeded", output_blob=encode({"data": text}))
    assert step.output_blob is not None and step.output_blob[:1] == b"z"
    assert len(step.output_blob) > 20 * 2**20
    await store.write(Batch(steps={step.key: step}))

    [got] = await store.get_steps("r1")
    assert got.output_blob == step.output_blob
    assert decode(got.output_blob) == {"data": text}


async def test_cached_responses_round_trip_until_they_expire(store: Store) -> None:
    await store.cache_put("k1", {"text": "hello", "usage": {"input": 3}}, ttl_s=60)
    await store.cache_put("k2", {"text": "old"}, ttl_s=-1)
    assert await store.cache_get("k1") == {"text": "hello", "usage": {"input": 3}}
    assert await store.cache_get("k2") is None
    assert await store.cache_get("missing") is None


async def test_finished_runs_names_only_runs_in_a_final_status(store: Store) -> None:
    runs = [
        make_run("done", status="succeeded"),
        make_run("dead", status="failed"),
        make_run("busy", status="running"),
        make_run("waiting"),
    ]
    await store.write(run_batch(*runs))
    finished = await store.finished_runs(["done", "dead", "busy", "waiting", "unknown"])
    assert sorted(finished) == ["dead", "done"]
