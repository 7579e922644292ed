"""`GET /v1/runs/{id}` shows a failed step's exception type and traceback; a permanent store
error is a 500 naming its cause, not a 503."""

from __future__ import annotations

import time

import httpx

from podium.engine.engine import Engine
from podium.model.workflow import Workflow
from podium.store.records import Batch, RunState


async def test_the_run_shows_a_failed_steps_type_and_traceback(
    engine: Engine, client: httpx.AsyncClient,
) -> None:
    wf = Workflow.model_validate({"name": "orders", "steps": {"order": {
        "kind": "python", "call": "faillib:parse_order", "input": {"amount": "twelve"},
        "retry": {"attempts": 1},
    }}})
    summary = await engine.run(wf)

    response = await client.get(f"/v1/runs/{summary.run_id}")
    assert response.status_code == 200
    step = response.json()["steps"]["order"]
    assert step["status"] == "failed" and step["error_type"] == "ValueError"
    assert "in _parse_amount" in step["traceback"]
    assert step["traceback"] == summary.steps["order"].traceback


async def test_a_missing_definition_is_a_500_that_names_it(
    engine: Engine, client: httpx.AsyncClient,
) -> None:
    row = RunState("orphan", "orders", "1", "no-such-digest", {}, created_at=time.time())
    await engine.store.write(Batch(runs={"orphan": row}))

    response = await client.get("/v1/runs/orphan")
    assert response.status_code == 500
    body = response.json()
    assert body["error"] == "store_error"
    assert "no workflow definition no-such-digest" in body["message"]
