"""`/metrics` against the store: after a known set of runs the counters equal what it holds.

Every counter comes from the engine's commits, every gauge from the store at scrape time, so
the store's rows are the reference for both.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from typing import Any

import httpx
import pytest
from clocklib import eventually
from metricslib import Scrape

from podium.engine.engine import Engine
from podium.model.workflow import Workflow
from podium.observe.labels import OTHER, BoundedLabel
from podium.observe.metrics import Metrics
from podium.store.base import Store

FAST_RETRY = {"backoff": "1ms", "jitter": 0}


def _flow(name: str, steps: dict[str, Any]) -> Workflow:
    return Workflow.model_validate({"name": name, "steps": steps})


OK = _flow("metrics-ok", {
    "draft": {"kind": "sim", "output": "text", "model": "gpt-test", "cost_usd": 0.25,
              "tokens": {"input": 120, "output": 30}},
    "review": {"kind": "sim", "output": "fine", "needs": ["draft"]},
})
FLAKY = _flow("metrics-flaky", {
    "call": {"kind": "sim", "fail_times": 2, "retry": {"attempts": 3, **FAST_RETRY}},
})
BROKEN = _flow("metrics-broken", {
    "call": {"kind": "sim", "fail_times": 9, "retry": {"attempts": 2, **FAST_RETRY}},
    "after": {"kind": "sim", "needs": ["call"]},
})
RUNS = ((OK, 3), (FLAKY, 2), (BROKEN, 2))


async def _run_all(engine: Engine) -> None:
    for workflow, times in RUNS:
        for _ in range(times):
            await engine.run(workflow)


async def test_counters_equal_the_runs_steps_and_spend_in_the_store(
    engine: Engine, store: Store
) -> None:
    metrics = Metrics.attach(engine)
    await _run_all(engine)
    scrape = Scrape.parse(await metrics.exposition())

    runs = [r for wf, _ in RUNS for r in await store.list_runs(workflow=wf.name, limit=100)]
    assert len(runs) == 7
    by_status = Counter((r.workflow, r.status) for r in runs)
    assert by_status[("metrics-broken", "failed")] == 2  # the failures are really there
    for (workflow, status), count in by_status.items():
        assert scrape.value("podium_runs_total", workflow=workflow, status=status) == count
        assert scrape.value("podium_runs_started_total", workflow=workflow) == RUNS_OF[workflow]
        assert scrape.value(
            "podium_run_duration_seconds_count", workflow=workflow, status=status
        ) == count
    assert scrape.value("podium_runs_total") == len(runs)  # nothing counted twice
    assert scrape.value("podium_queue_wait_seconds_count", priority="normal") == len(runs)

    steps = [s for r in runs for s in await store.get_steps(r.run_id)]
    step_counts = Counter((_workflow_of(runs, s.run_id), s.step_id, s.status) for s in steps)
    for (workflow, step, status), count in step_counts.items():
        value = scrape.value("podium_steps_total", workflow=workflow, step=step, status=status)
        assert value == count, (workflow, step, status)
    for workflow in RUNS_OF:
        mine = [s for s in steps if _workflow_of(runs, s.run_id) == workflow]
        attempts = sum(s.attempts for s in mine)
        assert scrape.value("podium_step_attempts_total", workflow=workflow) == attempts
        retried = sum(max(0, s.attempts - 1) for s in mine)
        assert scrape.value("podium_step_retries_total", workflow=workflow) == retried
    assert scrape.value("podium_step_retries_total", workflow="metrics-flaky") == 4

    assert scrape.value("podium_llm_tokens_total", workflow="metrics-ok", type="input") == sum(
        s.tokens_in for s in steps
    )
    assert scrape.value("podium_llm_tokens_total", model="gpt-test", type="output") == 90
    cost = scrape.value("podium_cost_usd_total", workflow="metrics-ok", model="gpt-test")
    assert cost == pytest.approx(sum(r.cost_usd for r in runs)) and cost == pytest.approx(0.75)

    assert scrape.value("podium_dlq_size") == len(await store.list_dlq()) == 2
    assert scrape.value("podium_active_runs") == 0
    assert scrape.value("podium_queue_depth") == 0
    assert scrape.value("podium_state_up") == 1
    assert scrape.value("podium_decision_latency_seconds_count") > 0


RUNS_OF = {wf.name: times for wf, times in RUNS}


def _workflow_of(runs: list[Any], run_id: str) -> str:
    return next(r.workflow for r in runs if r.run_id == run_id)


async def test_no_run_id_reaches_a_label(engine: Engine) -> None:
    metrics = Metrics.attach(engine)
    await _run_all(engine)
    text = (await metrics.exposition()).decode()
    for run in await engine.store.list_runs(limit=100):
        assert run.run_id not in text


async def test_workflow_names_past_the_cap_are_counted_as_other(engine: Engine) -> None:
    metrics = Metrics.attach(engine)
    metrics.commits.workflows = BoundedLabel(2)
    for name in ("cap-a", "cap-b", "cap-c", "cap-d"):
        await engine.run(_flow(name, {"one": {"kind": "sim", "output": 1}}))
    scrape = Scrape.parse(await metrics.exposition())
    names = {s["workflow"] for s in scrape.series("podium_runs_total")}
    assert names == {"cap-a", "cap-b", OTHER}
    assert scrape.value("podium_runs_total", workflow=OTHER, status="succeeded") == 2


def test_a_bounded_label_keeps_its_first_values() -> None:
    label = BoundedLabel(2)
    assert [label(v) for v in ("a", "b", "c", "a", "")] == ["a", "b", OTHER, "a", "none"]
    assert label("x" * 500) == OTHER


async def test_one_set_of_metrics_per_engine_counts_each_commit_once(engine: Engine) -> None:
    first, second = Metrics.attach(engine), Metrics.attach(engine)
    assert first is second
    await engine.run(OK)
    scrape = Scrape.parse(await first.exposition())
    assert scrape.value("podium_runs_total", workflow="metrics-ok") == 1


async def test_the_worker_scrape_server_reads_state_from_its_own_thread(engine: Engine) -> None:
    metrics = Metrics.attach(engine, cache_s=0)  # every scrape reads the store
    await metrics.state.refresh()  # what `podium worker --metrics-port` does first
    await engine.run(BROKEN)
    server = metrics.serve("127.0.0.1", 0)
    try:
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{server.port}/metrics")
    finally:
        server.close()
    assert response.status_code == 200
    scrape = Scrape.parse(response.text)
    assert scrape.value("podium_runs_total", workflow="metrics-broken", status="failed") == 1
    # The DLQ entry is newer than the first read: the scrape thread refreshed through the loop.
    assert scrape.value("podium_dlq_size") == 1
    assert scrape.value("podium_state_up") == 1


async def test_calls_that_wait_for_rate_limit_tokens_are_counted(clocked_engine: Engine) -> None:
    """The clock stands still: nothing refills, so a second call on a one-token bucket waits."""
    metrics = Metrics.attach(clocked_engine)
    buckets, key = clocked_engine.control.buckets, "agent:writer:rpm"
    await buckets.take(key, 1 / 60, 1.0, 1.0)  # a cold bucket waits for its first grant too
    first = buckets.waits[key]
    blocked = asyncio.create_task(buckets.take(key, 1 / 60, 1.0, 1.0))
    try:
        await eventually(lambda: buckets.waits[key] == first + 1)
        scrape = Scrape.parse(await metrics.exposition())
        assert scrape.value("podium_rate_limited_calls_total", limit=key) == first + 1
        assert not blocked.done()
    finally:
        blocked.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await blocked


async def test_calls_a_budget_refuses_are_counted_once_each(engine: Engine) -> None:
    metrics = Metrics.attach(engine)
    priced = {"kind": "sim", "cost_usd": 0.1}
    workflow = Workflow.model_validate({
        "name": "metrics-budget", "budget": {"usd": 0.25},
        "steps": {
            "a": {"kind": "sim", "cost_usd": 0.2},
            "b": {**priced, "needs": ["a"], "fallback": {"kind": "sim", "output": "cheap"}},
            "c": {**priced, "needs": ["b"], "optional": True},
        },
    })
    summary = await engine.run(workflow)
    assert summary.steps["b"].fallback_used and summary.steps["c"].status == "failed"
    scrape = Scrape.parse(await metrics.exposition())
    refused = scrape.value(
        "podium_budget_blocked_calls_total", workflow="metrics-budget", action="refused"
    )
    assert refused == 2  # b's call (it fell back) and c's
    assert scrape.value("podium_step_fallbacks_total", workflow="metrics-budget") == 1
    assert scrape.value("podium_cost_usd_total", workflow="metrics-budget") == pytest.approx(0.2)
