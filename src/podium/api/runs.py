"""`/v1/runs`: start a run of a registered workflow, read its summary, list, cancel, signal.

A submitted run is committed before 201 is sent; the engine (embedded) or a worker runs it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, model_validator

from podium.api.auth import Permission, Principal, permit
from podium.api.deps import EngineDep
from podium.api.errors import ERROR_RESPONSES, WorkflowNotFound
from podium.engine.summary import RunSummary
from podium.errors import RunNotFound
from podium.events import utc_iso
from podium.model.workflow import Workflow
from podium.observe.context import parse_traceparent
from podium.store.records import RUN_STATUSES, RunState
from podium.store.roles import RunStore, WorkflowRegistry

router = APIRouter(prefix="/v1/runs", tags=["runs"], responses=ERROR_RESPONSES)
MAX_LIST = 1000


class SubmitRun(BaseModel):
    """A run of a registered workflow: its newest definition, or the one with `digest`."""

    model_config = ConfigDict(extra="forbid")

    workflow_name: str = Field(description="a workflow registered with POST /v1/workflows")
    digest: str | None = Field(None, description="that registration; default: the newest")
    inputs: dict[str, Any] = Field(default_factory=dict, description="the run's inputs")

    @model_validator(mode="before")
    @classmethod
    def _no_inline_definition(cls, data: Any) -> Any:
        if isinstance(data, dict) and "workflow" in data:
            raise ValueError(
                "inline definitions are not run over the API: register it with"
                " POST /v1/workflows, then start it by workflow_name"
            )
        return data


@router.post("", status_code=201)
async def submit_run(
    body: SubmitRun,
    engine: EngineDep,
    response: Response,
    principal: Annotated[Principal, permit(Permission.RUNS_SUBMIT)],
    traceparent: Annotated[
        str | None,
        Header(description="W3C trace context: the run's trace hangs under this span"),
    ] = None,
) -> dict[str, str]:
    workflow = await registered_workflow(engine.store, principal, body.workflow_name, body.digest)
    # A definition from the API runs under `[security]`'s rules, never as trusted code. An
    # invalid traceparent is ignored, as the W3C recommendation says: the run starts a trace.
    run_id = await engine.submit(
        workflow, body.inputs, trusted=False, actor=principal.actor,
        trace_parent=parse_traceparent(traceparent),
    )
    response.headers["Location"] = f"/v1/runs/{run_id}"
    return {"run_id": run_id}


async def registered_workflow(
    store: WorkflowRegistry, principal: Principal, name: str, digest: str | None = None
) -> Workflow:
    found = await store.get_registered(name, digest) if principal.sees(name) else None
    if found is None:
        raise WorkflowNotFound(name, digest)
    return Workflow.model_validate(found[1])


async def visible_run(store: RunStore, principal: Principal, run_id: str) -> RunState:
    """The run, if this caller may see it; another team's run is as absent as a missing one."""
    row = await store.get_run(run_id)
    if row is None or not principal.sees(row.workflow):
        raise RunNotFound(run_id)
    return row


@router.get("/{run_id}")
async def get_run(
    run_id: str, engine: EngineDep, principal: Annotated[Principal, permit(Permission.RUNS_READ)]
) -> RunSummary:
    if principal.scope is not None:  # unscoped keys skip the extra read
        await visible_run(engine.store, principal, run_id)
    return await engine.summary(run_id)


@router.get("")
async def list_runs(
    engine: EngineDep,
    principal: Annotated[Principal, permit(Permission.RUNS_READ)],
    status: Annotated[list[str] | None, Query(description="repeatable or comma-separated")] = None,
    workflow: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 50,
) -> dict[str, list[dict[str, Any]]]:
    """Runs, newest first; a scoped key sees those of its workflows only."""
    statuses = _statuses(status) or None
    if principal.scope is None or workflow is not None:
        if workflow is not None and not principal.sees(workflow):
            return {"runs": []}
        rows = await engine.store.list_runs(statuses=statuses, workflow=workflow, limit=limit)
    else:
        # The store filters by exact name only: the newest MAX_LIST runs are filtered here.
        rows = await engine.store.list_runs(statuses=statuses, limit=MAX_LIST)
        rows = [row for row in rows if principal.sees(row.workflow)][:limit]
    return {"runs": [run_row(row) for row in rows]}


def _statuses(values: list[str] | None) -> list[str]:
    statuses = [s.strip() for value in values or [] for s in value.split(",") if s.strip()]
    unknown = [s for s in statuses if s not in RUN_STATUSES]
    if unknown:
        raise RequestValidationError([{
            "loc": ("query", "status"), "type": "value_error",
            "msg": f"{unknown[0]!r} is not a run status; use one of {', '.join(RUN_STATUSES)}",
        }])
    return statuses


def run_row(row: RunState) -> dict[str, Any]:
    """One run in a listing: the run summary's head, without steps and outputs."""
    return {
        "run_id": row.run_id, "workflow": row.workflow, "workflow_version": row.workflow_version,
        "status": row.status, "priority": row.priority, "created_at": utc_iso(row.created_at),
        "started_at": None if row.started_at is None else utc_iso(row.started_at),
        "finished_at": None if row.finished_at is None else utc_iso(row.finished_at),
        "error": row.error, "parent_run_id": row.parent_run_id,
    }


@router.post("/{run_id}/cancel", status_code=202)
async def cancel_run(
    run_id: str, engine: EngineDep,
    principal: Annotated[Principal, permit(Permission.RUNS_CANCEL)],
) -> dict[str, Any]:
    """Accepted, not done: running steps are cancelled and compensation runs first."""
    if principal.scope is not None:
        await visible_run(engine.store, principal, run_id)
    await engine.cancel(run_id, actor=principal.actor)
    return {"run_id": run_id, "cancel_requested": True}


@router.post("/{run_id}/signals/{name}", status_code=202)
async def signal_run(
    run_id: str,
    name: str,
    engine: EngineDep,
    principal: Annotated[Principal, permit(Permission.RUNS_SIGNAL)],
    payload: Annotated[Any, Body()] = None,
) -> dict[str, Any]:
    """The JSON body is the payload a `wait` step's output becomes; none gives null."""
    if principal.scope is not None:
        await visible_run(engine.store, principal, run_id)
    await engine.signal(run_id, name, payload, actor=principal.actor)
    return {"run_id": run_id, "signal": name}
