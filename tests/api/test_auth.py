"""Authentication and authorization: keys, roles, scopes, the failed-auth limit, audit.

Every key is a real one in the store; time is passed in, never waited for.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from apilib import BASE_URL, MakeKey, bearer, register

from podium.api.app import ApiOptions, create_app
from podium.api.guard import FailureWindow
from podium.api.keys import hash_secret, new_key, parse_token, verify
from podium.engine.engine import Engine
from podium.store.base import Store

APPROVAL: dict[str, Any] = {
    "name": "team-a-approval",
    "steps": {"approve": {"kind": "wait", "signal": "approval", "timeout": "30s"}},
}


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def anon(engine: Engine, clock: Clock) -> AsyncIterator[httpx.AsyncClient]:
    """A client without a key, on an app whose clocks the test moves."""
    app = create_app(engine, options=ApiOptions(clock=clock, monotonic=clock))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=BASE_URL
    ) as opened:
        yield opened


def as_key(token: str) -> dict[str, str]:
    return bearer(token)


async def audit_denials(store: Store) -> list[dict[str, Any]]:
    entries = await store.audit_entries(0, 1000)
    return [e.event.payload for e in entries if e.event.event_type == "audit.auth.denied"]


# -- keys -------------------------------------------------------------------------------------


def test_a_key_reads_pdm_id_secret_and_only_its_own_secret_verifies() -> None:
    token, record = new_key("ci", "operator", None, None, 0.0, "test")
    parsed = parse_token(token)
    assert parsed is not None and parsed.key_id == record.key_id and len(parsed.secret) == 43
    assert record.secret_hash.startswith("scrypt$16384$8$1$") and parsed.secret not in str(record)
    assert verify(token, record)
    other, _ = new_key("ci", "operator", None, None, 0.0, "test")
    forged = f"pdm_{record.key_id}_{parse_token(other).secret}"  # type: ignore[union-attr]
    assert not verify(forged, record)
    assert not verify(token, record.__class__(**{**_fields(record), "secret_hash": "x$y"}))
    assert hash_secret("s", b"0" * 16) == hash_secret("s", b"0" * 16) != hash_secret("s")


def _fields(record: Any) -> dict[str, Any]:
    return {name: getattr(record, name) for name in record.__slots__}


def test_an_unknown_role_makes_no_key() -> None:
    with pytest.raises(ValueError, match="unknown role"):
        new_key("x", "root", None, None, 0.0, "test")


# -- 401 ----------------------------------------------------------------------------------------


async def test_requests_without_a_valid_key_get_401_with_www_authenticate(
    anon: httpx.AsyncClient, make_key: MakeKey, store: Store
) -> None:
    valid = await make_key("viewer")
    key_id = parse_token(valid).key_id  # type: ignore[union-attr]
    unknown, _ = new_key("x", "admin", None, None, 0.0, "test")
    headers: list[dict[str, str]] = [
        {},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not-a-key"},
        as_key(unknown),
        as_key(f"pdm_{key_id}_{'A' * 43}"),  # a known id with the wrong secret
    ]
    for header in headers:
        response = await anon.get("/v1/runs", headers=header)
        assert response.status_code == 401, header
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"] == "unauthorized"
        assert response.json()["message"]
    assert (await anon.get("/v1/runs", headers=as_key(valid))).status_code == 200
    denials = await audit_denials(store)
    assert len(denials) == len(headers)
    assert {d["outcome"] for d in denials} == {"401"} and denials[0]["target"] == "GET /v1/runs"
    assert denials[-1]["key_id"] == key_id and denials[-1]["client"]


async def test_the_probes_need_no_key(anon: httpx.AsyncClient) -> None:
    assert (await anon.get("/healthz")).status_code == 200
    assert (await anon.get("/readyz")).status_code == 200
    assert (await anon.get("/openapi.json")).status_code == 401
    docs = await anon.get("/docs")  # the dashboard's page: its login form first
    assert docs.status_code == 303 and docs.headers["location"].startswith("/ui/login?")


async def test_a_revoked_key_is_refused_on_its_very_next_request(
    anon: httpx.AsyncClient, make_key: MakeKey
) -> None:
    admin = await make_key("admin")
    victim = await make_key("operator")
    victim_id = parse_token(victim).key_id  # type: ignore[union-attr]
    assert (await anon.get("/v1/runs", headers=as_key(victim))).status_code == 200  # cached
    revoked = await anon.delete(f"/v1/keys/{victim_id}", headers=as_key(admin))
    assert revoked.status_code == 200 and revoked.json() == {"key_id": victim_id, "revoked": True}
    response = await anon.get("/v1/runs", headers=as_key(victim))
    assert response.status_code == 401 and "revoked" in response.json()["message"]
    again = await anon.delete(f"/v1/keys/{victim_id}", headers=as_key(admin))
    assert again.status_code == 404


async def test_a_key_stops_working_when_it_expires(
    anon: httpx.AsyncClient, make_key: MakeKey, clock: Clock
) -> None:
    token = await make_key("viewer", expires_s=3600, now=clock.now)
    assert (await anon.get("/v1/runs", headers=as_key(token))).status_code == 200
    clock.now += 3599
    assert (await anon.get("/v1/runs", headers=as_key(token))).status_code == 200
    clock.now += 1
    expired = await anon.get("/v1/runs", headers=as_key(token))
    assert expired.status_code == 401 and "expired" in expired.json()["message"]


# -- 429 ----------------------------------------------------------------------------------------


async def test_failures_past_the_limit_get_429_but_a_valid_key_still_passes(
    anon: httpx.AsyncClient, make_key: MakeKey, clock: Clock, store: Store
) -> None:
    valid = await make_key("viewer")
    bad = as_key("pdm_000000000000_" + "B" * 43)
    statuses = [(await anon.get("/v1/runs", headers=bad)).status_code for _ in range(13)]
    assert statuses == [401] * 10 + [429] * 3
    limited = await anon.get("/v1/runs", headers=bad)
    assert limited.json()["error"] == "too_many_failures"
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert (await anon.get("/v1/runs", headers=as_key(valid))).status_code == 200
    assert len(await audit_denials(store)) == 10  # the 429s are not each audited
    clock.now += 60
    assert (await anon.get("/v1/runs", headers=bad)).status_code == 401


def test_the_failure_window_forgets_failures_a_minute_old() -> None:
    clock = Clock(0.0)
    window = FailureWindow(2, clock)
    window.add("a")
    clock.now = 30
    window.add("a")
    assert window.blocked_for("a") == pytest.approx(30) and window.blocked_for("b") is None
    clock.now = 60
    assert window.blocked_for("a") is None


# -- 403 and roles ------------------------------------------------------------------------------


async def test_a_role_without_the_permission_gets_403_and_it_is_audited(
    anon: httpx.AsyncClient, make_key: MakeKey, store: Store
) -> None:
    viewer = await make_key("viewer", name="reader")
    developer = await make_key("developer")
    refused = [
        await anon.post("/v1/runs", json={"workflow_name": "x"}, headers=as_key(viewer)),
        await anon.post("/v1/runs/r/cancel", headers=as_key(viewer)),
        await anon.get("/v1/keys", headers=as_key(developer)),
        await anon.get("/v1/audit", headers=as_key(developer)),
    ]
    assert [r.status_code for r in refused] == [403] * 4
    assert refused[0].json() == {
        "error": "forbidden", "message": "role viewer lacks the permission runs:submit"
    }
    denials = await audit_denials(store)
    assert [d["outcome"] for d in denials] == ["403"] * 4
    assert denials[0]["actor_name"] == "reader" and denials[0]["role"] == "viewer"


async def test_whoami_names_the_key_and_its_permissions(
    anon: httpx.AsyncClient, make_key: MakeKey
) -> None:
    token = await make_key("operator", name="ci", scope="team-a-*")
    body = (await anon.get("/v1/whoami", headers=as_key(token))).json()
    assert body["key_id"] == parse_token(token).key_id  # type: ignore[union-attr]
    assert (body["name"], body["role"], body["scope"]) == ("ci", "operator", "team-a-*")
    assert "runs:cancel" in body["permissions"] and "keys:admin" not in body["permissions"]


async def test_keys_made_over_the_api_work_and_listings_hold_no_secret(
    anon: httpx.AsyncClient, make_key: MakeKey, store: Store
) -> None:
    admin = await make_key("admin")
    made = await anon.post(
        "/v1/keys", json={"name": "bot", "role": "viewer", "expires": "1d"}, headers=as_key(admin)
    )
    assert made.status_code == 201
    token = made.json()["key"]
    assert (await anon.get("/v1/runs", headers=as_key(token))).status_code == 200
    listing = await anon.get("/v1/keys", headers=as_key(admin))
    secret = parse_token(token).secret  # type: ignore[union-attr]
    assert "scrypt" not in listing.text and secret not in listing.text
    assert {k["name"] for k in listing.json()["keys"]} >= {"bot", "admin"}
    bad = await anon.post("/v1/keys", json={"name": "x", "role": "root"}, headers=as_key(admin))
    assert bad.status_code == 422
    entries = await store.audit_entries(0, 100, actor="key:")
    assert [e.event.event_type for e in entries] == ["audit.key.create"]


# -- scopes -------------------------------------------------------------------------------------


async def test_a_scoped_key_sees_and_touches_only_its_own_workflows(
    client: httpx.AsyncClient, anon: httpx.AsyncClient, make_key: MakeKey, engine: Engine
) -> None:
    other = {**APPROVAL, "name": "team-b-approval"}
    for definition in (APPROVAL, other):
        await register(client, definition)
    ours = (await client.post("/v1/runs", json={"workflow_name": "team-a-approval"})).json()
    theirs = (await client.post("/v1/runs", json={"workflow_name": "team-b-approval"})).json()
    key = as_key(await make_key("operator", scope="team-a-*"))
    hidden = [
        await anon.get(f"/v1/runs/{theirs['run_id']}", headers=key),
        await anon.post(f"/v1/runs/{theirs['run_id']}/cancel", headers=key),
        await anon.post(f"/v1/runs/{theirs['run_id']}/signals/approval", json={}, headers=key),
        await anon.get("/v1/events", params={"run_id": theirs["run_id"]}, headers=key),
        await anon.get("/v1/workflows/team-b-approval", headers=key),
        await anon.post("/v1/runs", json={"workflow_name": "team-b-approval"}, headers=key),
    ]
    assert [r.status_code for r in hidden] == [404] * len(hidden)
    assert (await anon.get(f"/v1/runs/{ours['run_id']}", headers=key)).status_code == 200
    listed = (await anon.get("/v1/runs", headers=key)).json()["runs"]
    assert [r["run_id"] for r in listed] == [ours["run_id"]]
    named = await anon.get("/v1/runs", params={"workflow": "team-b-approval"}, headers=key)
    assert named.json()["runs"] == []
    workflows = (await anon.get("/v1/workflows", headers=key)).json()["workflows"]
    assert [w["name"] for w in workflows] == ["team-a-approval"]
    for path in ("/v1/workers", "/v1/events"):
        assert (await anon.get(path, headers=key)).status_code == 403
    assert (await engine.store.get_run(theirs["run_id"])).status != "cancelled"  # type: ignore[union-attr]


async def test_insecure_mode_acts_as_an_anonymous_admin(engine: Engine, store: Store) -> None:
    app = create_app(engine, options=ApiOptions(auth=False))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=BASE_URL
    ) as open_client:
        made = await open_client.post("/v1/keys", json={"name": "k", "role": "viewer"})
        assert made.status_code == 201
        assert (await open_client.get("/v1/whoami")).json()["actor"] == "anonymous"
    entries = await store.audit_entries(0, 10, actor="anonymous")
    assert [e.event.event_type for e in entries] == ["audit.key.create"]
