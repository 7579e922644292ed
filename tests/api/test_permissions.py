"""Every route declares its permission, and the permission matrix holds on the real app.

The matrix is every route x every kind of caller; each expected status is computed from the
route's declared permission and the role table, then checked against real keys in the store.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from apilib import BASE_URL, add_key, bearer, eventually
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts

from podium.api.app import create_app
from podium.api.auth import PUBLIC_PATHS, ROLE_PERMISSIONS, declared_checks
from podium.api.dashboard import is_dashboard
from podium.api.keys import new_key, parse_token
from podium.engine.engine import Engine
from podium.events import SYSTEM_ACTOR, audit_event
from podium.store.base import Store

TEAM_A_WAIT = {
    "name": "team-a-wait",
    "steps": {"approve": {"kind": "wait", "signal": "go", "timeout": "60s"}},
}
TEAM_A_QUICK = {"name": "team-a-quick", "steps": {"one": {"kind": "sim", "output": 1}}}
TEAM_A_FAILING = {
    "name": "team-a-failing",
    "steps": {"boom": {"kind": "sim", "fail_rate": 1.0, "retry": {"attempts": 1}}},
}
SCOPE_OF_OTHER_TEAM = "team-b-*"


@dataclass(frozen=True)
class Route:
    path: str  # as served, router prefix included
    methods: frozenset[str]
    api_route: APIRoute


def all_routes(app: FastAPI) -> list[Route]:
    """Every route as served (FastAPI keeps included routers' routes behind their router)."""
    found = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute) and context.path:
            found.append(Route(context.path, frozenset(route.methods), route))
    return found


def permitted_routes(app: FastAPI) -> list[Route]:
    """Routes of the API's bearer keys (the dashboard's, under a session, are checked in
    test_dashboard.py)."""
    return [r for r in all_routes(app) if r.path not in PUBLIC_PATHS and not is_dashboard(r.path)]


def test_every_route_but_the_probes_declares_a_permission(engine: Engine) -> None:
    app = create_app(engine)
    routes = all_routes(app)
    assert len(routes) >= 19 and {r.path for r in routes} >= {"/healthz", "/v1/runs/{run_id}"}
    missing = [
        f"{sorted(route.methods)} {route.path}"
        for route in permitted_routes(app) if not declared_checks(route.api_route)
    ]
    assert missing == [], f"routes without permit(...): {missing}"
    paths = {route.path for route in routes}
    assert "/redoc" not in paths  # Swagger UI's `/docs` is the dashboard's, from local files
    assert "/openapi.json" in paths  # served behind a key, as a permitted route


# -- the matrix ---------------------------------------------------------------------------------


@dataclass
class World:
    """What the sample requests act on: team A's definitions and runs, made by an admin."""

    store: Store
    admin: httpx.AsyncClient
    finished_run: str = ""
    dead_run: str = ""

    async def waiting_run(self) -> str:
        response = await self.admin.post("/v1/runs", json={"workflow_name": "team-a-wait"})
        run_id: str = response.json()["run_id"]
        return run_id

    async def finished(self, workflow: str) -> str:
        response = await self.admin.post("/v1/runs", json={"workflow_name": workflow})
        run_id: str = response.json()["run_id"]
        async def settled() -> bool:
            row = await self.store.get_run(run_id)
            dead = workflow != "team-a-failing" or await self.store.get_dlq(run_id) is not None
            return row is not None and row.done and dead

        await eventually(settled)
        return run_id

    async def run(self, which: str) -> str:
        if which == "finished":
            return self.finished_run
        if which == "dead":
            return self.dead_run
        if which == "fresh dead":
            return await self.finished("team-a-failing")
        return await self.waiting_run()

    async def schedule(self) -> str:
        response = await self.admin.post(
            "/v1/schedules", json={"workflow": "team-a-quick", "every": "1h"}
        )
        name: str = response.json()["name"]
        return name

    async def spare_key(self) -> str:
        return parse_token(await add_key(self.store, "viewer")).key_id  # type: ignore[union-attr]


@dataclass(frozen=True)
class Sample:
    """A request that succeeds for a caller allowed to make it. `touches`: what of team A's it
    names: an existing run or workflow (another team's key gets 404), a new definition (403: a
    scoped key cannot register outside its scope), or every workflow's events (403)."""

    method: str
    path: str  # may hold {run_id}, {key_id}, {schedule}
    json: Any = None
    params: dict[str, str] | None = None
    touches: str | None = None  # "existing" | "new" | "everything" | None
    run: str = "waiting"  # fills {run_id}: waiting (fresh), finished, dead, fresh dead


SAMPLES: dict[tuple[str, str], Sample] = {
    ("POST", "/v1/runs"): Sample("POST", "/v1/runs", {"workflow_name": "team-a-wait"},
                                 touches="existing"),
    ("GET", "/v1/runs"): Sample("GET", "/v1/runs"),
    ("GET", "/v1/runs/{run_id}"): Sample("GET", "/v1/runs/{run_id}", touches="existing",
                                         run="finished"),
    ("POST", "/v1/runs/{run_id}/cancel"): Sample("POST", "/v1/runs/{run_id}/cancel",
                                                 touches="existing"),
    ("POST", "/v1/runs/{run_id}/signals/{name}"): Sample(
        "POST", "/v1/runs/{run_id}/signals/go", {"ok": True}, touches="existing"),
    ("POST", "/v1/workflows"): Sample("POST", "/v1/workflows", {"definition": TEAM_A_QUICK},
                                      touches="new"),
    ("GET", "/v1/workflows"): Sample("GET", "/v1/workflows"),
    ("GET", "/v1/workflows/{name}"): Sample("GET", "/v1/workflows/team-a-wait",
                                            touches="existing"),
    ("GET", "/v1/events"): Sample("GET", "/v1/events", params={"run_id": "{run_id}"},
                                  touches="existing", run="finished"),
    ("GET", "/v1/workers"): Sample("GET", "/v1/workers"),
    ("GET", "/v1/keys"): Sample("GET", "/v1/keys"),
    ("POST", "/v1/keys"): Sample("POST", "/v1/keys", {"name": "made", "role": "viewer"}),
    ("DELETE", "/v1/keys/{key_id}"): Sample("DELETE", "/v1/keys/{key_id}"),
    ("GET", "/v1/whoami"): Sample("GET", "/v1/whoami"),
    ("GET", "/v1/audit"): Sample("GET", "/v1/audit"),
    ("GET", "/v1/audit/head"): Sample("GET", "/v1/audit/head"),
    ("GET", "/openapi.json"): Sample("GET", "/openapi.json"),
    ("GET", "/v1/runs/{run_id}/events"): Sample("GET", "/v1/runs/{run_id}/events",
                                                touches="existing", run="finished"),
    ("GET", "/v1/events/log"): Sample("GET", "/v1/events/log", touches="everything"),
    ("GET", "/v1/dlq"): Sample("GET", "/v1/dlq"),
    ("GET", "/v1/dlq/{run_id}"): Sample("GET", "/v1/dlq/{run_id}", run="dead"),
    ("POST", "/v1/dlq/{run_id}/replay"): Sample("POST", "/v1/dlq/{run_id}/replay",
                                                run="fresh dead"),
    ("POST", "/v1/dlq/purge"): Sample("POST", "/v1/dlq/purge"),
    ("GET", "/v1/pauses"): Sample("GET", "/v1/pauses"),
    ("PUT", "/v1/pauses/{scope}/{name}"): Sample("PUT", "/v1/pauses/workflow/team-a-x"),
    ("DELETE", "/v1/pauses/{scope}/{name}"): Sample("DELETE", "/v1/pauses/workflow/team-a-x"),
    ("GET", "/v1/circuits"): Sample("GET", "/v1/circuits"),
    ("POST", "/v1/circuits/{key:path}/open"): Sample("POST", "/v1/circuits/agent-x/open"),
    ("POST", "/v1/circuits/{key:path}/close"): Sample("POST", "/v1/circuits/agent-x/close"),
    ("GET", "/v1/schedules"): Sample("GET", "/v1/schedules"),
    ("POST", "/v1/schedules"): Sample("POST", "/v1/schedules",
                                      {"workflow": "team-a-quick", "every": "1h"}),
    ("DELETE", "/v1/schedules/{key}"): Sample("DELETE", "/v1/schedules/{schedule}"),
    ("GET", "/v1/queue"): Sample("GET", "/v1/queue"),
    ("GET", "/v1/spend"): Sample("GET", "/v1/spend"),
    ("GET", "/v1/budgets"): Sample("GET", "/v1/budgets"),
    ("GET", "/metrics"): Sample("GET", "/metrics"),
}

REFUSED_KEYS = ("anonymous", "bad key", "revoked", "expired")
ROLE_CALLERS = ("metrics", "viewer", "operator", "developer", "admin")
SCOPED = "scoped admin, other team"
CALLERS = (*REFUSED_KEYS, *ROLE_CALLERS, SCOPED)


@dataclass(frozen=True)
class Case:
    route: Route
    method: str
    caller: str

    @property
    def sample(self) -> Sample:
        return SAMPLES[(self.method, self.route.path)]

    def expected(self) -> int | str:
        """401, 403, 404, or "2xx": from the declared permission and the role table only."""
        if self.caller in REFUSED_KEYS:
            return 401
        role = "admin" if self.caller == SCOPED else self.caller
        checks = declared_checks(self.route.api_route)
        if not all(c.permission in ROLE_PERMISSIONS[role] for c in checks):
            return 403
        if self.caller == SCOPED:
            if any(c.system for c in checks) or self.sample.touches in ("new", "everything"):
                return 403
            if self.sample.touches == "existing":
                return 404
        return "2xx"


def matrix(app: FastAPI) -> list[Case]:
    routes = [(r, m) for r in permitted_routes(app) for m in sorted(r.methods)]
    unknown = [f"{m} {r.path}" for r, m in routes if (m, r.path) not in SAMPLES]
    assert unknown == [], f"add a sample request to SAMPLES for: {unknown}"
    return [Case(r, m, caller) for (r, m), caller in itertools.product(routes, CALLERS)]


async def caller_headers(store: Store) -> dict[str, dict[str, str]]:
    revoked = await add_key(store, "admin", name="revoked")
    await store.revoke_key(
        parse_token(revoked).key_id, 0.0,  # type: ignore[union-attr]
        audit_event(SYSTEM_ACTOR, "key.revoke", "x"),
    )
    unknown, _ = new_key("ghost", "admin", None, None, 0.0, "test")
    headers = {
        "anonymous": {},
        "bad key": bearer(unknown),
        "revoked": bearer(revoked),
        "expired": bearer(await add_key(store, "admin", expires_s=1, now=0.0)),
        SCOPED: bearer(await add_key(store, "admin", scope=SCOPE_OF_OTHER_TEAM)),
    }
    for role in ROLE_CALLERS:
        headers[role] = bearer(await add_key(store, role))
    return headers


async def world_for(store: Store, admin: httpx.AsyncClient) -> World:
    for definition in (TEAM_A_WAIT, TEAM_A_QUICK, TEAM_A_FAILING):
        assert (await admin.post("/v1/workflows", json={"definition": definition})).is_success
    world = World(store, admin)
    world.finished_run = await world.finished("team-a-quick")
    world.dead_run = await world.finished("team-a-failing")
    return world


async def send(client: httpx.AsyncClient, case: Case, world: World) -> httpx.Response:
    sample = case.sample
    needs_run = "{run_id}" in sample.path or "{run_id}" in str(sample.params)
    run_id = await world.run(sample.run) if needs_run else ""
    fill: Callable[[str], str] = lambda text: text.replace("{run_id}", run_id)  # noqa: E731
    path = fill(sample.path)
    if "{key_id}" in path:
        path = path.replace("{key_id}", await world.spare_key())
    if "{schedule}" in path:
        path = path.replace("{schedule}", await world.schedule())
    params = {k: fill(v) for k, v in (sample.params or {}).items()}
    return await client.request(sample.method, path, json=sample.json, params=params)


async def test_the_permission_matrix_holds_for_every_route_and_caller(
    engine: Engine, store: Store
) -> None:
    app = create_app(engine)
    headers = await caller_headers(store)
    cases = matrix(app)
    routes = sum(len(r.methods) for r in permitted_routes(app))
    assert len(cases) == routes * len(CALLERS)
    print(f"permission matrix: {len(cases)} cases ({routes} routes x {len(CALLERS)} callers)")
    admin_transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=admin_transport, base_url=BASE_URL, headers=headers["admin"]
    ) as admin:
        world = await world_for(store, admin)
        wrong = [problem for n, case in enumerate(cases)
                 if (problem := await check(app, case, headers, world, n))]
    assert wrong == []


async def check(
    app: FastAPI, case: Case, headers: dict[str, dict[str, str]], world: World, n: int
) -> str | None:
    # Each case from its own address: the refused callers' 401s must not add up to a 429.
    transport = httpx.ASGITransport(app=app, client=(f"10.1.{n // 250}.{n % 250}", 4000))
    async with httpx.AsyncClient(
        transport=transport, base_url=BASE_URL, headers=headers[case.caller]
    ) as client:
        response = await send(client, case, world)
    expected = case.expected()
    ok = response.is_success if expected == "2xx" else response.status_code == expected
    if ok:
        return None
    return (f"{case.method} {case.route.path} as {case.caller}: expected {expected},"
            f" got {response.status_code} {response.text[:120]}")


pytestmark = pytest.mark.timeout(240)
