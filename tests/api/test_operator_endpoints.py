"""The operator endpoints (events, DLQ, pauses, circuits, schedules, queue, spend, budgets).

Real app, real engine, real store (SQLite and PostgreSQL), real API keys; documents as `--json`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from apilib import eventually

from podium.api.app import create_app
from podium.api.keys import new_key
from podium.check import parse_workflow
from podium.engine.engine import Engine
from podium.engine.runtime import Compiled
from podium.events import SYSTEM_ACTOR, audit_event
from podium.model.status import RUN_FINAL
from podium.store.base import Store
from podium.store.documents import circuit_json, dlq_json, event_json, schedule_json
from podium.store.records import RegisteredWorkflow

DEADLINE_S = 10.0

FAILING: dict[str, Any] = {
    "name": "ops-failing",
    "steps": {
        "ok": {"kind": "sim", "output": {"n": 1}},
        "boom": {"kind": "sim", "needs": ["ok"], "fail_rate": 1.0, "retry": {"attempts": 1}},
    },
}
NIGHTLY: dict[str, Any] = {
    "name": "ops-nightly",
    "inputs": {"depth": {"type": "integer", "required": True}},
    "steps": {"work": {"kind": "sim", "output": {"depth": "{{ inputs.depth }}"}}},
}


async def key_for(store: Store, role: str, scope: str | None = None) -> str:
    token, record = new_key(f"test-{role}", role, scope, None, time.time(), "test")
    await store.add_key(record, audit_event(SYSTEM_ACTOR, "key.create", record.key_id))
    return token


@pytest.fixture
async def admin(engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    token = await key_for(engine.store, "admin")
    transport = httpx.ASGITransport(app=create_app(engine))
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://127.0.0.1", headers=headers
    ) as client:
        yield client


async def viewer_of(engine: Engine) -> httpx.AsyncClient:
    token = await key_for(engine.store, "viewer")
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(engine)), base_url="http://127.0.0.1",
        headers={"Authorization": f"Bearer {token}"},
    )


async def register(store: Store, definition: dict[str, Any]) -> None:
    compiled = Compiled.of(parse_workflow(definition, "workflow"))
    workflow = compiled.workflow
    record = RegisteredWorkflow(workflow.name, str(workflow.version), compiled.digest,
                                time.time(), "test")
    audit = audit_event(SYSTEM_ACTOR, "workflow.register", workflow.name)
    await store.register_workflow(record, compiled.body, audit)


async def dead_lettered_run(engine: Engine) -> str:
    run_id = await engine.submit(parse_workflow(FAILING, "workflow"), {})
    async with asyncio.timeout(DEADLINE_S):
        await engine.wait_done(run_id)

    async def dead_lettered() -> bool:
        return await engine.store.get_dlq(run_id) is not None

    await eventually(dead_lettered, DEADLINE_S)
    return run_id


async def until_final(client: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    async with asyncio.timeout(DEADLINE_S):
        while True:
            summary: dict[str, Any] = (await client.get(f"/v1/runs/{run_id}")).json()
            if summary["status"] in RUN_FINAL:
                return summary
            await asyncio.sleep(0.01)


async def audit_actions(store: Store) -> list[str]:
    return [entry.event.event_type for entry in await store.audit_entries()]


def assert_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) >= {"error", "message"} and "\n" not in body["message"]
    return body


# -- events ---------------------------------------------------------------------------------------


async def test_a_runs_events_are_the_stored_events_in_log_order(
    engine: Engine, admin: httpx.AsyncClient
) -> None:
    run_id = await dead_lettered_run(engine)
    stored = await engine.store.list_events(run_id)

    events = (await admin.get(f"/v1/runs/{run_id}/events")).json()
    assert events == [event_json(seq, e) for seq, e in stored]
    after = (await admin.get(f"/v1/runs/{run_id}/events",
                             params={"after_seq": stored[1][0], "limit": 2})).json()
    assert after == [event_json(seq, e) for seq, e in stored[2:4]]
    last = (await admin.get(f"/v1/runs/{run_id}/events", params={"last": 2})).json()
    assert last == [event_json(seq, e) for seq, e in stored[-2:]]


async def test_the_event_log_holds_every_run_and_an_unknown_run_is_404(
    engine: Engine, admin: httpx.AsyncClient
) -> None:
    first, second = await dead_lettered_run(engine), await dead_lettered_run(engine)
    log = (await admin.get("/v1/events/log", params={"limit": 1000})).json()
    assert {first, second} <= {e["correlation_id"] for e in log}
    assert [e["seq"] for e in log] == sorted(e["seq"] for e in log)

    assert_error(await admin.get("/v1/runs/nope/events"), 404)
    assert_error(await admin.get("/v1/events/log", params={"limit": 0}), 422)


# -- DLQ ------------------------------------------------------------------------------------------


async def test_the_dlq_lists_shows_replays_and_purges_a_dead_lettered_run(
    engine: Engine, admin: httpx.AsyncClient
) -> None:
    run_id = await dead_lettered_run(engine)
    entry = await engine.store.get_dlq(run_id)
    assert entry is not None

    assert (await admin.get("/v1/dlq")).json() == [dlq_json(entry)]
    shown = (await admin.get(f"/v1/dlq/{run_id}")).json()
    assert shown == {**dlq_json(entry),
                     "run": (await engine.summary(run_id)).model_dump(mode="json")}
    assert shown["failed_steps"] == ["boom"]

    replayed = await admin.post(f"/v1/dlq/{run_id}/replay")
    assert replayed.status_code == 202, replayed.text
    assert (await until_final(admin, run_id))["status"] == "failed"  # it fails again, same id
    assert "audit.dlq.replay" in await audit_actions(engine.store)

    purged = await admin.post("/v1/dlq/purge")
    assert purged.status_code == 200 and purged.json()["purged"] >= 1
    assert (await admin.get("/v1/dlq")).json() == []
    assert "audit.dlq.purge" in await audit_actions(engine.store)


async def test_a_run_not_in_the_dlq_is_404_to_show_and_to_replay(
    admin: httpx.AsyncClient,
) -> None:
    assert_error(await admin.get("/v1/dlq/nope"), 404)
    assert_error(await admin.post("/v1/dlq/nope/replay"), 404)


# -- pauses ---------------------------------------------------------------------------------------


async def test_a_pause_is_set_listed_and_cleared_with_its_audit_entries(
    engine: Engine, admin: httpx.AsyncClient
) -> None:
    set_ = await admin.put("/v1/pauses/workflow/ops-nightly")
    assert set_.json() == {"scope": "workflow", "name": "ops-nightly", "paused": True,
                           "changed": True}
    again = await admin.put("/v1/pauses/workflow/ops-nightly")
    assert again.json()["changed"] is False
    listed = (await admin.get("/v1/pauses")).json()
    assert listed == {"pauses": [{"scope": "workflow", "name": "ops-nightly"}]}

    cleared = await admin.delete("/v1/pauses/workflow/ops-nightly")
    assert cleared.json()["paused"] is False and cleared.json()["changed"] is True
    assert (await admin.get("/v1/pauses")).json() == {"pauses": []}
    actions = await audit_actions(engine.store)
    assert "audit.pause.set" in actions and "audit.pause.clear" in actions
    assert_error(await admin.put("/v1/pauses/cluster/x"), 422)


# -- circuits -------------------------------------------------------------------------------------


async def test_a_circuit_whose_key_holds_colons_and_slashes_is_forced_open_then_closed(
    engine: Engine, admin: httpx.AsyncClient
) -> None:
    key = "http:api.example.com/v1/chat"
    opened = await admin.post(f"/v1/circuits/{key}/open")
    assert opened.status_code == 200, opened.text
    assert opened.json()["changed"] is True
    assert opened.json()["circuit"]["state"] == "open" and opened.json()["circuit"]["forced"]

    listed = (await admin.get("/v1/circuits")).json()["circuits"]
    [record] = await engine.store.list_circuits()
    assert [{**row, "half_open_in_s": None} for row in listed] == [
        {**circuit_json(record, time.time()), "half_open_in_s": None}
    ]
    closed = await admin.post(f"/v1/circuits/{key}/close")
    assert closed.json()["circuit"]["state"] == "closed" and closed.json()["changed"] is True
    actions = await audit_actions(engine.store)
    assert "audit.circuit.open" in actions and "audit.circuit.close" in actions
    log = (await admin.get("/v1/events/log")).json()
    assert {"system.circuit.opened", "system.circuit.closed"} <= {e["event_type"] for e in log}


async def test_closing_a_circuit_that_never_recorded_state_is_404(
    admin: httpx.AsyncClient,
) -> None:
    assert_error(await admin.post("/v1/circuits/llm:nobody/close"), 404)


# -- schedules ------------------------------------------------------------------------------------


async def test_a_schedule_of_a_registered_workflow_is_added_listed_and_removed(
    engine: Engine, admin: httpx.AsyncClient
) -> None:
    await register(engine.store, NIGHTLY)
    body = {"workflow": "ops-nightly", "cron": "0 3 * * *", "timezone": "Europe/Paris",
            "inputs": {"depth": 2}}
    added = await admin.post("/v1/schedules", json=body)
    assert added.status_code == 201, added.text
    document = added.json()
    assert (document["name"], document["workflow"], document["inputs"]) == (
        "ops-nightly", "ops-nightly", {"depth": 2}
    )
    [stored] = await engine.store.list_schedules()
    assert (await admin.get("/v1/schedules")).json() == [schedule_json(stored)]

    second = await admin.post("/v1/schedules", json={**body, "cron": None, "every": "1h"})
    assert second.json()["name"] == "ops-nightly-2"  # a derived name taken: the next one

    removed = await admin.delete("/v1/schedules/ops-nightly")
    assert removed.json() == schedule_json(stored)
    assert_error(await admin.delete("/v1/schedules/ops-nightly"), 404)
    actions = await audit_actions(engine.store)
    assert "audit.schedule.add" in actions and "audit.schedule.remove" in actions


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"workflow": "not-registered"}, 404),
        ({"workflow": "/etc/podium/flow.yaml"}, 404),  # a path is only an unknown name
        ({"cron": "every tuesday"}, 422),
        ({"every": "1h"}, 422),  # two specs
        ({"timezone": "Mars/Olympus"}, 422),
        ({"inputs": {"depth": "deep"}}, 422),
        ({"inputs": {}}, 422),
        ({"file": "flow.yaml"}, 422),
    ],
)
async def test_a_bad_schedule_is_refused_and_nothing_is_stored(
    engine: Engine, admin: httpx.AsyncClient, change: dict[str, Any], status: int
) -> None:
    await register(engine.store, NIGHTLY)
    body = {"workflow": "ops-nightly", "cron": "0 3 * * *", "inputs": {"depth": 2}, **change}
    assert_error(await admin.post("/v1/schedules", json=body), status)
    assert await engine.store.list_schedules() == []


# -- queue, spend, budgets ------------------------------------------------------------------------


async def test_queue_spend_and_budgets_answer_their_cli_documents(
    engine: Engine, admin: httpx.AsyncClient
) -> None:
    await dead_lettered_run(engine)
    queue = (await admin.get("/v1/queue")).json()
    assert [row["priority"] for row in queue["priorities"]] == ["critical", "high", "normal",
                                                                "low"]
    spend = (await admin.get("/v1/spend", params={"by": "model", "since": "1h"})).json()
    assert set(spend) == {"by", "since", "workflow", "groups", "total"} and spend["by"] == "model"
    assert (await admin.get("/v1/budgets")).json() == {"scopes": []}

    assert_error(await admin.get("/v1/spend", params={"by": "planet"}), 422)
    assert_error(await admin.get("/v1/spend", params={"since": "yesterday"}), 422)


# -- permissions ----------------------------------------------------------------------------------


async def test_a_viewer_reads_but_cannot_replay_purge_pause_or_force(engine: Engine) -> None:
    run_id = await dead_lettered_run(engine)
    async with await viewer_of(engine) as viewer:
        for path in ("/v1/dlq", f"/v1/dlq/{run_id}", "/v1/pauses", "/v1/circuits",
                     "/v1/schedules", "/v1/queue", "/v1/spend", "/v1/budgets",
                     f"/v1/runs/{run_id}/events", "/v1/events/log"):
            assert (await viewer.get(path)).status_code == 200, path
        assert_error(await viewer.post(f"/v1/dlq/{run_id}/replay"), 403)
        assert_error(await viewer.post("/v1/dlq/purge"), 403)
        assert_error(await viewer.put("/v1/pauses/workflow/x"), 403)
        assert_error(await viewer.post("/v1/circuits/llm:x/open"), 403)
        assert_error(await viewer.post("/v1/schedules", json={"workflow": "x", "every": "1h"}),
                     403)
    assert await engine.store.get_dlq(run_id) is not None
    assert await engine.store.list_circuits() == []


async def test_without_a_key_every_operator_endpoint_is_401(engine: Engine) -> None:
    transport = httpx.ASGITransport(app=create_app(engine))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as anonymous:
        for path in ("/v1/dlq", "/v1/circuits", "/v1/queue", "/v1/events/log"):
            assert_error(await anonymous.get(path), 401)
