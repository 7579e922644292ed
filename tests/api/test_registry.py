"""The workflow registry: definitions from the API are validated as untrusted, kept by digest,
and run by name, under the trust policy, never as local code.
"""

from __future__ import annotations

from typing import Any

import httpx
from apilib import register

from podium.store.base import Store

SHELL: dict[str, Any] = {
    "name": "shell",
    "steps": {"pwn": {"kind": "python", "call": "os:system"}},
}


async def test_a_definition_calling_os_system_is_422_naming_the_step_and_never_runs(
    client: httpx.AsyncClient, store: Store
) -> None:
    response = await client.post("/v1/workflows", json={"definition": SHELL})
    assert response.status_code == 422
    assert any("steps.pwn" in p for p in response.json()["problems"])
    assert await store.list_registered() == []
    started = await client.post("/v1/runs", json={"workflow_name": "shell"})
    assert started.status_code == 404
    assert await store.list_runs() == []


async def test_a_registered_run_is_untrusted_and_attributed_to_its_key(
    client: httpx.AsyncClient, store: Store
) -> None:
    quick = {"name": "quick", "steps": {"one": {"kind": "sim", "output": 1}}}
    registered = await register(client, quick)
    assert registered["created"] and registered["registered_by"].startswith("key:")
    shown = (await client.get("/v1/workflows/quick")).json()
    assert shown["digest"] == registered["digest"] and shown["definition"]["name"] == "quick"
    assert [w["name"] for w in (await client.get("/v1/workflows")).json()["workflows"]] == [
        "quick"
    ]
    run_id = (await client.post("/v1/runs", json={"workflow_name": "quick"})).json()["run_id"]
    row = await store.get_run(run_id)
    assert row is not None and row.trusted is False
    audit = await store.audit_entries(0, 100, actor="key:")
    assert [e.event.event_type for e in audit][:2] == ["audit.workflow.register", "run.queued"]
    queued = [e for _, e in await store.list_events(run_id) if e.event_type == "run.queued"]
    assert queued[0].actor == registered["registered_by"]


async def test_an_inline_definition_is_refused_with_a_pointer_to_the_registry(
    client: httpx.AsyncClient, store: Store
) -> None:
    response = await client.post("/v1/runs", json={"workflow": SHELL})
    assert response.status_code == 422
    assert "POST /v1/workflows" in response.json()["message"]
    assert await store.list_runs() == []
