"""`/v1/workflows`: the registry of definitions sent over the API, which runs start by name.

A definition is validated under `[security]`'s trust policy before it is kept.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from podium import check
from podium.api.auth import Permission, Principal, forbidden, permit
from podium.api.deps import EngineDep
from podium.api.errors import ERROR_RESPONSES, WorkflowNotFound
from podium.engine.runtime import Compiled
from podium.events import audit_event, utc_iso
from podium.model.policy import TrustPolicy
from podium.model.pricing import Pricing
from podium.model.workflow import Workflow
from podium.store.records import RegisteredWorkflow

router = APIRouter(prefix="/v1/workflows", tags=["workflows"], responses=ERROR_RESPONSES)
MAX_LIST = 1000


class RegisterWorkflow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    definition: dict[str, Any] = Field(description="a workflow definition, as JSON")


def parse_untrusted(data: dict[str, Any], policy: TrustPolicy, pricing: Pricing) -> Workflow:
    """Validates a definition from the network under `[security]`'s rules: nothing outside
    `python_modules` is imported, no file is read, static targets must pass the egress list."""
    return check.parse_workflow(data, "definition", policy=policy, pricing=pricing)


@router.post("", status_code=201, responses={200: {"description": "already registered"}})
async def register_workflow(
    body: RegisterWorkflow,
    engine: EngineDep,
    response: Response,
    principal: Annotated[Principal, permit(Permission.WORKFLOWS_WRITE)],
) -> dict[str, Any]:
    """201 for a new definition (or version), 200 if this exact one is registered already."""
    policy = engine.policy
    # Off the loop: validation is CPU work, and may look up the modules `call:` names.
    pricing = engine.settings.control.pricing
    workflow = await asyncio.to_thread(parse_untrusted, body.definition, policy, pricing)
    if not principal.sees(workflow.name):
        raise forbidden(f"a key scoped to {principal.scope!r} cannot register {workflow.name!r}")
    compiled = Compiled.of(workflow)
    entry = RegisteredWorkflow(
        workflow.name, str(workflow.version), compiled.digest, engine.clock.now(),
        principal.actor.label,
    )
    audit = audit_event(
        principal.actor, "workflow.register", workflow.name,
        digest=compiled.digest, version=entry.version,
    )
    created = await engine.store.register_workflow(entry, compiled.body, audit)
    if not created:
        response.status_code = 200
    return {**registration(entry), "created": created}


def registration(entry: RegisteredWorkflow) -> dict[str, Any]:
    return {
        "name": entry.name, "version": entry.version, "digest": entry.digest,
        "registered_at": utc_iso(entry.registered_at), "registered_by": entry.registered_by,
    }


@router.get("")
async def list_workflows(
    engine: EngineDep,
    principal: Annotated[Principal, permit(Permission.RUNS_READ)],
    name: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 100,
) -> dict[str, list[dict[str, Any]]]:
    """Registrations, newest first; a scoped key sees its workflows only."""
    if name is not None and not principal.sees(name):
        return {"workflows": []}
    fetch = limit if principal.scope is None else MAX_LIST
    rows = await engine.store.list_registered(name, fetch)
    return {"workflows": [registration(r) for r in rows if principal.sees(r.name)][:limit]}


@router.get("/{name}")
async def get_workflow(
    name: str,
    engine: EngineDep,
    principal: Annotated[Principal, permit(Permission.RUNS_READ)],
    digest: str | None = None,
) -> dict[str, Any]:
    """The newest registration of `name` (or the one with `digest`) and its definition."""
    found = await engine.store.get_registered(name, digest) if principal.sees(name) else None
    if found is None:
        raise WorkflowNotFound(name, digest)
    entry, definition = found
    return {**registration(entry), "definition": definition}
