"""The HTTP API over a running engine: register, submit, inspect, control, errors, probes, SSE.

Requests go through httpx's ASGI transport on the test's own loop, with an admin key.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx
import pytest
from apilib import BASE_URL, bearer, register

from podium.api.app import create_app
from podium.api.streams import EventStreams, stream_events
from podium.bus.base import Bus
from podium.check import parse_workflow
from podium.engine.engine import Engine
from podium.events import Event
from podium.model.status import RUN_FINAL
from podium.model.workflow import Workflow
from podium.store.base import Store

DEADLINE_S = 10.0

PIPELINE: dict[str, Any] = {
    "name": "api-pipeline",
    "inputs": {"topic": {"type": "string", "required": True}},
    "steps": {
        "research": {"kind": "sim", "latency": "20ms", "output": {"facts": ["a", "b"]}},
        "draft": {
            "kind": "sim", "needs": ["research"],
            "output": {"text": "{{ inputs.topic }}: {{ steps.research.output.facts }}"},
        },
    },
}
APPROVAL: dict[str, Any] = {
    "name": "api-approval",
    "steps": {"approve": {"kind": "wait", "signal": "approval", "timeout": "30s"}},
}


async def submit(client: httpx.AsyncClient, body: dict[str, Any]) -> str:
    """Registers `body["workflow"]` (if given) and starts it by name."""
    body = dict(body)
    if "workflow" in body:
        definition = body.pop("workflow")
        await register(client, definition)
        body["workflow_name"] = definition["name"]
    response = await client.post("/v1/runs", json=body)
    assert response.status_code == 201, response.text
    run_id: str = response.json()["run_id"]
    return run_id


async def until_status(
    client: httpx.AsyncClient, run_id: str, statuses: frozenset[str] | set[str]
) -> dict[str, Any]:
    async with asyncio.timeout(DEADLINE_S):
        while True:
            summary: dict[str, Any] = (await client.get(f"/v1/runs/{run_id}")).json()
            if summary["status"] in statuses:
                return summary
            await asyncio.sleep(0.01)


async def until_step(client: httpx.AsyncClient, run_id: str, step: str, status: str) -> None:
    async with asyncio.timeout(DEADLINE_S):
        while (await client.get(f"/v1/runs/{run_id}")).json()["steps"][step]["status"] != status:
            await asyncio.sleep(0.01)


def parse_sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    """(event type, data) per SSE message; comments (keepalives) are skipped."""
    messages = []
    for block in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":")
        )
        if fields:
            messages.append((fields["event"], json.loads(fields["data"])))
    return messages


# -- submit and inspect -----------------------------------------------------------------------


async def test_a_registered_definition_runs_by_name_to_a_succeeded_summary(
    client: httpx.AsyncClient,
) -> None:
    await register(client, PIPELINE)
    response = await client.post(
        "/v1/runs", json={"workflow_name": "api-pipeline", "inputs": {"topic": "q"}}
    )
    assert response.status_code == 201
    run_id = response.json()["run_id"]
    assert response.headers["location"] == f"/v1/runs/{run_id}"
    summary = await until_status(client, run_id, RUN_FINAL)
    assert summary["status"] == "succeeded"
    assert summary["run_id"] == run_id and summary["workflow"] == "api-pipeline"
    assert summary["outputs"]["draft"] == {"text": "q: ['a', 'b']"}
    assert summary["steps"]["research"]["attempts"] == 1
    assert set(summary) >= {"cost_usd", "tokens", "duration_s", "error", "steps", "outputs"}


async def test_a_run_starts_from_the_newest_registration_or_the_digest_asked_for(
    client: httpx.AsyncClient,
) -> None:
    first = await register(client, PIPELINE)
    newer = {**PIPELINE, "version": 2}
    second = await register(client, newer)
    assert first["created"] and second["created"] and first["digest"] != second["digest"]
    again = await client.post("/v1/workflows", json={"definition": PIPELINE})
    assert again.status_code == 200 and again.json()["created"] is False
    latest = await submit(client, {"workflow_name": "api-pipeline", "inputs": {"topic": "two"}})
    pinned = await submit(client, {
        "workflow_name": "api-pipeline", "digest": first["digest"], "inputs": {"topic": "one"}
    })
    summaries = [await until_status(client, r, RUN_FINAL) for r in (latest, pinned)]
    assert [s["outputs"]["draft"] for s in summaries] == [
        {"text": "two: ['a', 'b']"}, {"text": "one: ['a', 'b']"}
    ]
    runs = (await client.get("/v1/runs")).json()["runs"]
    assert {r["workflow_version"] for r in runs} == {"1", "2"}


async def test_runs_are_listed_newest_first_and_filtered(client: httpx.AsyncClient) -> None:
    older = await submit(client, {"workflow": PIPELINE, "inputs": {"topic": "a"}})
    newer = await submit(client, {"workflow": PIPELINE, "inputs": {"topic": "b"}})
    for run_id in (older, newer):
        await until_status(client, run_id, RUN_FINAL)
    listed = (await client.get("/v1/runs", params={"workflow": "api-pipeline"})).json()["runs"]
    assert [r["run_id"] for r in listed] == [newer, older]
    assert listed[0]["status"] == "succeeded" and listed[0]["finished_at"].endswith("Z")
    one = await client.get("/v1/runs", params={"status": "succeeded,failed", "limit": 1})
    assert [r["run_id"] for r in one.json()["runs"]] == [newer]
    none = await client.get("/v1/runs", params={"status": "failed"})
    assert none.json()["runs"] == []


# -- errors -----------------------------------------------------------------------------------


async def test_an_invalid_workflow_is_422_with_one_line_per_problem_and_nothing_is_stored(
    client: httpx.AsyncClient, store: Store
) -> None:
    bad = {"name": "broken", "steps": {"a": {"kind": "sim", "needs": ["ghost"], "colour": 1}}}
    response = await client.post("/v1/workflows", json={"definition": bad})
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "workflow_invalid"
    problems = body["problems"]
    assert any("steps.a.needs" in p and "ghost" in p for p in problems)
    assert any("steps.a.colour" in p for p in problems)
    assert all(p.startswith("error: ") and "\n" not in p for p in problems)
    assert await store.list_registered() == []


async def test_missing_inputs_are_422_and_nothing_is_stored(
    client: httpx.AsyncClient, store: Store
) -> None:
    await register(client, PIPELINE)
    response = await client.post("/v1/runs", json={"workflow_name": "api-pipeline", "inputs": {}})
    assert response.status_code == 422
    assert any("topic" in p for p in response.json()["problems"])
    assert await store.list_runs() == []


async def test_a_malformed_request_is_422_with_a_one_line_message(
    client: httpx.AsyncClient,
) -> None:
    inline = await client.post("/v1/runs", json={"workflow": PIPELINE, "workflow_name": "x"})
    neither = await client.post("/v1/runs", json={"inputs": {}})
    not_json = await client.post(
        "/v1/runs", content=b"{nope", headers={"content-type": "application/json"}
    )
    bad_status = await client.get("/v1/runs", params={"status": "sleeping"})
    for response in (inline, neither, not_json, bad_status):
        assert response.status_code == 422
        body = response.json()
        assert body["error"] == "invalid_request"
        assert body["message"] and "\n" not in body["message"]
    assert "register it with POST /v1/workflows" in inline.json()["message"]
    assert "sleeping" in bad_status.json()["message"]
    assert not_json.json()["message"].startswith("body: not valid JSON")


async def test_unknown_runs_and_workflow_names_are_404(client: httpx.AsyncClient) -> None:
    responses = [
        await client.get("/v1/runs/no-such-run"),
        await client.post("/v1/runs/no-such-run/cancel"),
        await client.post("/v1/runs/no-such-run/signals/go", json={}),
        await client.get("/v1/events", params={"run_id": "no-such-run"}),
        await client.post("/v1/runs", json={"workflow_name": "never-registered"}),
        await client.get("/v1/workflows/never-registered"),
        await client.delete("/v1/keys/000000000000"),
        await client.get("/v1/no-such-path"),
    ]
    assert [r.status_code for r in responses] == [404] * len(responses)
    assert [r.json()["error"] for r in responses[:7]] == [
        *["run_not_found"] * 4, *["workflow_not_found"] * 2, "key_not_found"
    ]


async def test_signalling_or_cancelling_a_finished_run_is_409(client: httpx.AsyncClient) -> None:
    run_id = await submit(client, {"workflow": PIPELINE, "inputs": {"topic": "t"}})
    await until_status(client, run_id, RUN_FINAL)
    signalled = await client.post(f"/v1/runs/{run_id}/signals/go", json={"x": 1})
    cancelled = await client.post(f"/v1/runs/{run_id}/cancel")
    for response in (signalled, cancelled):
        assert response.status_code == 409
        assert response.json()["error"] == "run_finished"
        assert "already ended with status succeeded" in response.json()["message"]


async def test_an_unexpected_error_answers_500_without_traceback_or_detail(
    engine: Engine, admin_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(run_id: str) -> None:
        raise RuntimeError("password=hunter2")

    monkeypatch.setattr(engine, "summary", broken)
    transport = httpx.ASGITransport(app=create_app(engine), raise_app_exceptions=False)
    async with httpx.AsyncClient(
        transport=transport, base_url=BASE_URL, headers=bearer(admin_key)
    ) as client:
        response = await client.get("/v1/runs/any")
    assert response.status_code == 500
    assert response.json()["error"] == "internal_error"
    assert "hunter2" not in response.text and "Traceback" not in response.text


# -- control ----------------------------------------------------------------------------------


async def test_a_signal_resumes_a_waiting_run_with_its_json_payload(
    client: httpx.AsyncClient,
) -> None:
    run_id = await submit(client, {"workflow": APPROVAL})
    await until_step(client, run_id, "approve", "running")
    response = await client.post(f"/v1/runs/{run_id}/signals/approval", json={"approved": True})
    assert response.status_code == 202
    summary = await until_status(client, run_id, RUN_FINAL)
    assert summary["status"] == "succeeded"
    assert summary["outputs"]["approve"] == {"approved": True}


async def test_a_cancelled_run_ends_cancelled(client: httpx.AsyncClient) -> None:
    run_id = await submit(client, {"workflow": APPROVAL})
    await until_step(client, run_id, "approve", "running")
    response = await client.post(f"/v1/runs/{run_id}/cancel")
    assert response.status_code == 202
    assert response.json() == {"run_id": run_id, "cancel_requested": True}
    summary = await until_status(client, run_id, RUN_FINAL)
    assert summary["status"] == "cancelled"
    assert summary["steps"]["approve"]["status"] == "cancelled"


# -- probes and workers -------------------------------------------------------------------------


async def test_the_probes_answer_200_while_the_store_answers(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).status_code == 200
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}
    assert (await client.get("/v1/workers")).json() == {"workers": []}


async def test_readiness_is_503_when_the_store_fails(
    client: httpx.AsyncClient, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def unreachable(**_: Any) -> None:
        raise OSError("connection refused to postgresql://podium:s3cret@db")

    monkeypatch.setattr(store, "list_runs", unreachable)
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert "s3cret" not in response.text
    assert (await client.get("/healthz")).status_code == 200  # alive: no restart for this


# -- events -------------------------------------------------------------------------------------


async def test_the_event_stream_of_a_run_ends_with_its_completion(
    client: httpx.AsyncClient,
) -> None:
    run_id = await submit(client, {"workflow": PIPELINE, "inputs": {"topic": "sse"}})
    async with asyncio.timeout(DEADLINE_S), client.stream(
        "GET", "/v1/events", params={"run_id": run_id}
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        text = "".join([chunk async for chunk in response.aiter_text()])
    messages = parse_sse(text)
    types = [event_type for event_type, _ in messages]
    assert types[0] == "run.queued" and types[-1] == "run.completed"
    assert "agent.task.completed" in types
    assert all(data["correlation_id"] == run_id for _, data in messages)
    assert all(data["event_type"] == event_type for event_type, data in messages)
    assert len({data["event_id"] for _, data in messages}) == len(messages)  # no duplicates
    assert messages[-1][1]["payload"]["status"] == "succeeded"


async def test_the_event_stream_of_a_finished_run_replays_its_history(
    client: httpx.AsyncClient,
) -> None:
    run_id = await submit(client, {"workflow": PIPELINE, "inputs": {"topic": "late"}})
    await until_status(client, run_id, RUN_FINAL)
    async with asyncio.timeout(DEADLINE_S):
        response = await client.get("/v1/events", params={"run_id": run_id})
    types = [event_type for event_type, _ in parse_sse(response.text)]
    assert types[0] == "run.queued" and types[-1] == "run.completed"


class SilentBus:
    """A bus that delivers nothing: the stream must still end, from the store."""

    distributed = False

    async def subscribe(self, run_id: str | None = None) -> AsyncIterator[Event]:
        await asyncio.Event().wait()
        yield Event("never", "never")  # unreachable: makes this an async generator


async def test_a_run_stream_ends_from_the_store_when_the_bus_misses_events(
    engine: Engine, store: Store
) -> None:
    run_id = await engine.submit(engine_workflow(), {"topic": "quiet"})
    silent = cast(Bus, SilentBus())
    streams = EventStreams(keepalive_s=0.02)
    async with asyncio.timeout(DEADLINE_S):
        chunks = [c async for c in stream_events(store, silent, streams, run_id)]
    types = [event_type for event_type, _ in parse_sse("".join(chunks))]
    assert types[-1] == "run.completed"


async def test_the_stream_of_all_events_follows_the_bus_until_closed(engine: Engine) -> None:
    streams = EventStreams(keepalive_s=0.02)
    stream = stream_events(engine.store, engine.bus, streams, None)
    assert await anext(stream) == ": keepalive\n\n"  # subscribed, and quiet so far
    run_id = await engine.submit(engine_workflow(), {"topic": "all"})
    seen: list[str] = []
    async with asyncio.timeout(DEADLINE_S):
        async for chunk in stream:
            seen += [t for t, data in parse_sse(chunk) if data["correlation_id"] == run_id]
            if seen and seen[-1] == "run.completed":
                streams.close()
    assert seen[0] == "run.queued" and seen[-1] == "run.completed"


def engine_workflow() -> Workflow:
    return parse_workflow(PIPELINE, "test")
