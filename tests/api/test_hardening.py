"""The request hardening: body size, JSON shape, Origin, content types, Host, headers.

Each test is an attack a browser page or a careless client could make; none may reach a route.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
from apilib import BASE_URL, bearer, register

from podium.api.app import ApiOptions, create_app
from podium.api.middleware import host_name, json_problem
from podium.engine.engine import Engine
from podium.store.base import Store

APPROVAL: dict[str, Any] = {
    "name": "harden-approval",
    "steps": {"approve": {"kind": "wait", "signal": "approval", "timeout": "30s"}},
}
MIB = 1024 * 1024


async def started_run(client: httpx.AsyncClient) -> str:
    await register(client, APPROVAL)
    response = await client.post("/v1/runs", json={"workflow_name": APPROVAL["name"]})
    run_id: str = response.json()["run_id"]
    return run_id


async def test_a_100_mb_body_gets_413_without_being_read(client: httpx.AsyncClient) -> None:
    sent: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:  # chunked: no Content-Length to go by
        for _ in range(100):
            sent.append(1)
            yield b" " * MIB

    response = await client.post(
        "/v1/workflows", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"] == "request_too_large"
    assert len(sent) <= 12  # cut off just past the 10 MiB limit
    declared = await client.post(
        "/v1/workflows", content=b"{}", headers={
            "content-type": "application/json", "content-length": str(100 * MIB)
        },
    )
    assert declared.status_code == 413


async def test_json_nested_400_deep_is_422_in_one_line(client: httpx.AsyncClient) -> None:
    deep = "[" * 400 + "]" * 400
    for body in (f'{{"definition": {{"x": {deep}}}}}', "[" * 5000 + "]" * 5000):
        response = await client.post(
            "/v1/workflows", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 422, response.text
        assert response.json()["message"] == "body: JSON nested deeper than 32 levels"


async def test_numbers_out_of_range_are_422(client: httpx.AsyncClient) -> None:
    run_id = await started_run(client)
    for number in ("1e400", "-1e400", "NaN", "Infinity", "9" * 5000):
        response = await client.post(
            f"/v1/runs/{run_id}/signals/approval", content=f'{{"n": {number}}}',
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 422, number
        assert "\n" not in response.json()["message"]


def test_the_json_check_passes_ordinary_documents_and_leaves_malformed_ones_to_the_route() -> None:
    assert json_problem(b'{"a": [1, 2.5, {"b": null}]}', 32) is None
    assert json_problem(b"{nope", 32) is None


async def test_a_cross_site_text_plain_cancel_is_refused_and_the_run_goes_on(
    client: httpx.AsyncClient, store: Store
) -> None:
    run_id = await started_run(client)
    form_post = await client.post(
        f"/v1/runs/{run_id}/cancel", content=b"x=1",
        headers={"content-type": "text/plain", "origin": "https://evil.example"},
    )
    assert form_post.status_code == 403 and form_post.json()["error"] == "forbidden_origin"
    same_origin_text = await client.post(
        f"/v1/runs/{run_id}/cancel", content=b"x=1", headers={"content-type": "text/plain"}
    )
    assert same_origin_text.status_code == 415
    assert same_origin_text.json()["error"] == "unsupported_media_type"
    form = await client.post(f"/v1/runs/{run_id}/cancel", data={"x": "1"})
    assert form.status_code == 415
    row = await store.get_run(run_id)
    assert row is not None and row.status != "cancelled"
    assert not await store.cancel_requests([run_id])


async def test_a_foreign_origin_cannot_change_anything_but_the_own_origin_can(
    client: httpx.AsyncClient,
) -> None:
    run_id = await started_run(client)
    foreign = await client.post(
        f"/v1/runs/{run_id}/signals/approval", json={}, headers={"origin": "http://evil.example"}
    )
    assert foreign.status_code == 403
    reads = await client.get("/v1/runs", headers={"origin": "http://evil.example"})
    assert reads.status_code == 200 and "access-control-allow-origin" not in reads.headers
    own = await client.post(
        f"/v1/runs/{run_id}/signals/approval", json={}, headers={"origin": BASE_URL}
    )
    assert own.status_code == 202


async def test_cors_origins_listed_in_the_config_are_allowed(
    engine: Engine, admin_key: str
) -> None:
    control = engine.settings.control.model_copy(update={
        "api": engine.settings.control.api.model_copy(update={"cors_origins": ["https://ui.example"]})
    })
    engine.settings = engine.settings.model_copy(update={"control": control})
    transport = httpx.ASGITransport(app=create_app(engine))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        preflight = await client.options("/v1/runs", headers={
            "origin": "https://ui.example", "access-control-request-method": "POST",
            "access-control-request-headers": "authorization,content-type",
        })
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://ui.example"
        allowed = await client.post(
            "/v1/workflows", json={"definition": APPROVAL},
            headers={**bearer(admin_key), "origin": "https://ui.example"},
        )
        assert allowed.status_code == 201
        assert allowed.headers["access-control-allow-origin"] == "https://ui.example"


async def test_a_forged_host_gets_400_but_probes_answer(engine: Engine, admin_key: str) -> None:
    options = ApiOptions(allowed_hosts=("podium.internal", "[::1]"))
    transport = httpx.ASGITransport(app=create_app(engine, options=options))
    async with httpx.AsyncClient(transport=transport, headers=bearer(admin_key)) as client:
        forged = await client.get("http://attacker.example/v1/runs")
        assert forged.status_code == 400 and forged.json()["error"] == "invalid_host"
        assert (await client.get("http://podium.internal:8080/v1/runs")).status_code == 200
        assert (await client.get("http://[::1]:8080/v1/runs")).status_code == 200
        assert (await client.get("http://localhost/v1/runs")).status_code == 400
        assert (await client.get("http://attacker.example/healthz")).status_code == 200


def test_host_names_lose_ports_and_brackets() -> None:
    assert host_name("Example.COM:8080") == "example.com"
    assert host_name("[::1]:8080") == "::1" and host_name("::1") == "::1"


async def test_every_answer_carries_the_security_headers(
    client: httpx.AsyncClient, engine: Engine
) -> None:
    answers = [
        await client.get("/v1/runs"), await client.get("/healthz"),
        await client.get("/v1/runs/nope"),
        await client.get("/v1/runs", headers={"authorization": ""}),
    ]
    for response in answers:
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert "default-src 'none'" in response.headers["content-security-policy"]
        assert response.headers["cache-control"] == "no-store"
        assert "strict-transport-security" not in response.headers
    transport = httpx.ASGITransport(app=create_app(engine, options=ApiOptions(tls=True)))
    async with httpx.AsyncClient(transport=transport, base_url="https://localhost") as tls:
        assert "max-age" in (await tls.get("/healthz")).headers["strict-transport-security"]


async def test_nul_characters_and_lone_surrogates_are_422_not_a_store_failure(
    client: httpx.AsyncClient,
) -> None:
    answers = [
        await client.post("/v1/runs", json={"workflow_name": "a\u0000b"}),
        await client.post("/v1/runs", json={"workflow_name": "x", "inputs": {"\u0000": 1}}),
        await client.post(
            "/v1/runs", content=b'{"workflow_name": "\\udac6"}',
            headers={"content-type": "application/json"},
        ),
        await client.get("/v1/workflows/a%00b"),
        await client.get("/v1/runs", params={"workflow": "a\u0000b"}),
    ]
    assert [r.status_code for r in answers] == [422] * len(answers)
    assert all("NUL" in r.json()["message"] for r in answers)
