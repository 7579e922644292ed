"""The dashboard without a browser: login and its cookie, CSRF, the API's permissions on
every page and button, keyset pages of runs, and the offline API docs."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from apilib import BASE_URL, MakeKey, eventually, register
from fastapi.routing import APIRoute, iter_route_contexts

from podium.api.app import ApiOptions, create_app
from podium.api.auth import declared_checks
from podium.api.dashboard import is_dashboard
from podium.engine.engine import Engine
from podium.store.records import Batch, RunState

WAITING = {"name": "approval-flow", "inputs": {"title": {"type": "string", "required": True}},
           "steps": {"ask": {"kind": "wait", "signal": "approval", "timeout": "10m"}}}
QUICK = {"name": "quick", "steps": {"a": {"kind": "sim", "output": {"x": 1}},
                                    "b": {"kind": "sim", "needs": ["a"], "output": 2}}}


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page holds no CSRF token"
    return found.group(1)


@pytest.fixture
async def app_client(engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url=BASE_URL) as opened:
        opened.app = app  # type: ignore[attr-defined]
        yield opened


async def log_in(client: httpx.AsyncClient, key: str) -> httpx.Response:
    form = await client.get("/ui/login")
    return await client.post("/ui/login", data={"key": key, "csrf": csrf_of(form.text),
                                                "next": "/ui/runs"})


async def test_login_with_a_key_opens_a_strict_httponly_session(
    app_client: httpx.AsyncClient, make_key: MakeKey,
) -> None:
    assert (await app_client.get("/ui/runs")).headers["location"].startswith("/ui/login?next=")
    response = await log_in(app_client, await make_key("viewer"))
    assert response.status_code == 303 and response.headers["location"] == "/ui/runs"
    cookie = response.headers["set-cookie"].lower()
    assert "podium_session=" in cookie and "httponly" in cookie and "samesite=strict" in cookie
    page = await app_client.get("/ui/runs")
    assert page.status_code == 200 and "<h1>Runs</h1>" in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp


async def test_a_wrong_key_is_refused_on_the_form(
    app_client: httpx.AsyncClient,
) -> None:
    response = await log_in(app_client, "pdm_nope_nope")
    assert response.status_code == 401 and "API key" in response.text
    assert "podium_session" not in response.headers.get("set-cookie", "")


async def test_a_post_without_the_session_csrf_token_is_403(
    app_client: httpx.AsyncClient, make_key: MakeKey, engine: Engine,
) -> None:
    await log_in(app_client, await make_key("admin"))
    for data in ({}, {"csrf": "forged"}):
        response = await app_client.post("/ui/dlq/purge", data=data)
        assert response.status_code == 403, data
    anonymous = httpx.AsyncClient(transport=app_client._transport, base_url=BASE_URL)
    async with anonymous:
        assert (await anonymous.post("/ui/dlq/purge", data={})).status_code == 401


async def test_a_form_from_another_origin_is_refused(
    app_client: httpx.AsyncClient, make_key: MakeKey,
) -> None:
    await log_in(app_client, await make_key("admin"))
    page = await app_client.get("/ui/system")
    response = await app_client.post("/ui/dlq/purge", data={"csrf": csrf_of(page.text)},
                                     headers={"Origin": "http://evil.example"})
    assert response.status_code == 403


async def test_a_viewer_sees_no_cancel_button_and_a_forged_cancel_is_403(
    app_client: httpx.AsyncClient, make_key: MakeKey, engine: Engine,
) -> None:
    admin = httpx.AsyncClient(transport=app_client._transport, base_url=BASE_URL,
                              headers={"Authorization": f"Bearer {await make_key('admin')}"})
    async with admin:
        await register(admin, WAITING)
        started = await admin.post("/v1/runs", json={"workflow_name": "approval-flow",
                                                     "inputs": {"title": "t"}})
    run_id = started.json()["run_id"]
    await log_in(app_client, await make_key("viewer"))
    page = await app_client.get(f"/ui/runs/{run_id}")
    assert page.status_code == 200
    assert 'id="cancel"' not in page.text and 'id="send-signal"' not in page.text
    forged = await app_client.post(f"/ui/runs/{run_id}/cancel", data={"csrf": csrf_of(page.text)})
    assert forged.status_code == 403 and "runs:cancel" in forged.text
    assert (await engine.store.get_run(run_id)).status in ("queued", "running")  # type: ignore[union-attr]
    await engine.cancel(run_id)


async def test_an_operator_approves_a_waiting_step_with_a_signal(
    app_client: httpx.AsyncClient, make_key: MakeKey, engine: Engine,
) -> None:
    admin = httpx.AsyncClient(transport=app_client._transport, base_url=BASE_URL,
                              headers={"Authorization": f"Bearer {await make_key('admin')}"})
    async with admin:
        await register(admin, WAITING)
    await log_in(app_client, await make_key("operator"))
    form = await app_client.get("/ui/start/approval-flow")
    assert 'id="in_title"' in form.text
    started = await app_client.post("/ui/start/approval-flow",
                                    data={"csrf": csrf_of(form.text), "in_title": "hello"})
    assert started.status_code == 303
    run_url = started.headers["location"]
    run_id = run_url.rsplit("/", 1)[1]

    async def waiting() -> bool:
        return "waiting for: approval" in (await app_client.get(run_url)).text

    await eventually(waiting)
    page = await app_client.get(run_url)
    sent = await app_client.post(f"{run_url}/signal", data={
        "csrf": csrf_of(page.text), "name": "approval", "payload": '{"approved": true}'})
    assert sent.status_code == 303
    summary = await engine.wait(run_id)
    assert summary.status == "succeeded" and summary.steps["ask"].output == {"approved": True}


async def test_bad_signal_json_sends_nothing_and_says_why(
    app_client: httpx.AsyncClient, make_key: MakeKey, engine: Engine,
) -> None:
    await log_in(app_client, await make_key("operator"))
    page = await app_client.get("/ui/runs")
    response = await app_client.post("/ui/runs/nope/signal", data={
        "csrf": csrf_of(page.text), "name": "x", "payload": "{not json"})
    assert response.status_code == 303
    shown = await app_client.get(response.headers["location"].replace("/ui/runs/nope", "/ui/runs"))
    assert "the signal was not sent" in shown.text


async def test_the_one_time_login_token_works_once(
    app_client: httpx.AsyncClient,
) -> None:
    token = app_client.app.state.sessions.new_login_token()  # type: ignore[attr-defined]
    first = await app_client.get(f"/ui/login?token={token}")
    assert first.status_code == 303 and "podium_session=" in first.headers["set-cookie"]
    assert (await app_client.get("/ui/system")).status_code == 200  # an admin's page
    app_client.cookies.clear()
    again = await app_client.get(f"/ui/login?token={token}")
    assert again.status_code == 200 and "used or expired" in again.text


async def test_a_revoked_key_ends_its_session(
    app_client: httpx.AsyncClient, make_key: MakeKey, engine: Engine,
) -> None:
    key = await make_key("viewer")
    await log_in(app_client, key)
    assert (await app_client.get("/ui/runs")).status_code == 200
    key_id = key.split("_")[1]
    from podium.events import SYSTEM_ACTOR, audit_event
    await engine.store.revoke_key(key_id, 1.0, audit_event(SYSTEM_ACTOR, "key.revoke", key_id))
    assert (await app_client.get("/ui/runs")).status_code == 303


async def test_runs_come_in_keyset_pages_with_counts(
    app_client: httpx.AsyncClient, make_key: MakeKey, engine: Engine,
) -> None:
    rows = {f"r{i:04d}": RunState(f"r{i:04d}", "bulk", "1", "d", {}, created_at=1000.0 + i // 2,
                                  status="failed" if i % 3 == 0 else "succeeded")
            for i in range(120)}
    await engine.store.write(Batch(runs=rows))
    await log_in(app_client, await make_key("viewer"))
    seen: list[str] = []
    url = "/ui/runs?workflow=bulk"
    while url:
        page = await app_client.get(url)
        assert page.status_code == 200
        seen += re.findall(r'href="/ui/runs/(r\d{4})"', page.text)
        older = re.search(r'rel="next" href="([^"]+)"', page.text)
        url = older.group(1).replace("&amp;", "&") if older else ""
    assert seen == sorted(rows, reverse=True)  # each once, newest first, across pages
    counts = (await app_client.get("/ui/runs?workflow=bulk")).text
    assert re.search(r"failed <b>40</b>", counts) and re.search(r"succeeded <b>80</b>", counts)
    found = await app_client.get("/ui/runs?q=r011&status=failed")
    assert re.findall(r'href="/ui/runs/(r\d{4})"', found.text) == ["r0117", "r0114", "r0111"]
    assert (await app_client.get("/ui/runs?status=nope")).status_code == 422
    on_the_day = await app_client.get("/ui/runs?workflow=bulk&start=1970-01-01&end=1970-01-01")
    assert len(re.findall(r'href="/ui/runs/(r\d{4})"', on_the_day.text)) == 50
    later = await app_client.get("/ui/runs?workflow=bulk&start=1970-01-02")
    assert re.findall(r'href="/ui/runs/(r\d{4})"', later.text) == []
    assert (await app_client.get("/ui/runs?start=yesterday")).status_code == 422


async def test_the_api_docs_load_nothing_from_another_host(
    app_client: httpx.AsyncClient, make_key: MakeKey,
) -> None:
    await log_in(app_client, await make_key("viewer"))
    page = await app_client.get("/docs")
    assert page.status_code == 200
    refs = [r for r in re.findall(r'(?:src|href)="([^"]+)"', page.text) if r != "data:,"]
    assert refs and all(ref.startswith("/") and not ref.startswith("//") for ref in refs)
    for ref in refs:
        assert (await app_client.get(ref)).status_code == 200, ref
    spec = await app_client.get("/ui/openapi.json")
    assert spec.status_code == 200 and "/v1/runs" in spec.json()["paths"]
    assert not any(p.startswith("/ui") for p in spec.json()["paths"])


async def test_every_page_renders_for_an_admin(
    app_client: httpx.AsyncClient, make_key: MakeKey, engine: Engine,
) -> None:
    from podium.model.workflow import Workflow
    summary = await engine.run(Workflow.model_validate(QUICK))
    await log_in(app_client, await make_key("admin"))
    for url in ("/ui/runs", f"/ui/runs/{summary.run_id}", f"/ui/runs/{summary.run_id}/panels",
                "/ui/system", "/ui/start", "/ui/runs/rows"):
        response = await app_client.get(url)
        assert response.status_code == 200, (url, response.text[:300])
    page = await app_client.get(f"/ui/runs/{summary.run_id}")
    assert page.text.count('class="node') == 2 and "st-succeeded" in page.text


def test_every_dashboard_route_but_the_login_declares_a_permission(engine: Engine) -> None:
    app = create_app(engine)
    open_routes = {"/", "/ui", "/ui/login", "/ui/logout", "/ui/static/status.css"}
    routes = [(c.path, c.original_route) for c in iter_route_contexts(app.routes)
              if isinstance(c.original_route, APIRoute) and is_dashboard(c.path)]
    assert len(routes) >= 15
    missing = [p for p, r in routes if p not in open_routes and not declared_checks(r)]
    assert missing == []
    assert all(not r.include_in_schema for _, r in routes)


async def test_insecure_mode_needs_no_login(engine: Engine) -> None:
    app = create_app(engine, options=ApiOptions(auth=False))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url=BASE_URL, follow_redirects=True) as client:
        assert (await client.get("/ui/system")).status_code == 200


async def test_an_operator_pauses_opens_a_circuit_and_purges_from_the_system_page(
    app_client: httpx.AsyncClient, make_key: MakeKey, engine: Engine,
) -> None:
    await log_in(app_client, await make_key("operator"))
    csrf = csrf_of((await app_client.get("/ui/system")).text)
    posts = [
        ("/ui/circuits", {"key": "http:api.example.com", "action": "open"}),
        ("/ui/pauses", {"scope": "agent", "name": "writer", "action": "pause"}),
        ("/ui/dlq/purge", {}),
    ]
    for url, data in posts:
        response = await app_client.post(url, data={"csrf": csrf, **data})
        assert response.status_code == 303, (url, response.text)
    page = (await app_client.get("/ui/system")).text
    assert "circuit http:api.example.com opened" in page and "agent writer paused" in page
    assert "dead-letter queue purged" in page
    assert ("agent", "writer") in await engine.store.list_paused()
    assert [c.state for c in await engine.store.list_circuits()] == ["open"]
    closed = await app_client.post("/ui/circuits", data={
        "csrf": csrf, "key": "http:api.example.com", "action": "close"})
    assert closed.status_code == 303
    assert [c.state for c in await engine.store.list_circuits()] == ["closed"]
    too_long = await app_client.post("/ui/pauses", data={
        "csrf": csrf, "scope": "agent", "name": "x" * 500, "action": "pause"})
    assert too_long.status_code == 303
    assert "error: pause" in (await app_client.get("/ui/system")).text
