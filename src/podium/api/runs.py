"""`/v1/runs`: submit a run, read its summary, list runs, cancel and signal them.

A submitted run is committed before 201 is sent; the engine (embedded) or a worker runs it.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, model_validator

from podium.api.deps import EngineDep
from podium.api.errors import WorkflowNotFound
from podium.bus.events import utc_iso
from podium.engine.summary import RunSummary
from podium.model.loader import parse_workflow
from podium.model.workflow import Workflow
from podium.store.base import Store
from podium.store.records import RUN_STATUSES, RunState

router = APIRouter(prefix="/v1/runs", tags=["runs"])
MAX_LIST = 1000


class SubmitRun(BaseModel):
    """Either a whole definition (`workflow`) or the name of one this store has run."""

    model_config = ConfigDict(extra="forbid")

    workflow: dict[str, Any] | None = Field(None, description="a workflow definition (DESIGN §2)")
    workflow_name: str | None = Field(None, description="run the newest definition of this name")
    inputs: dict[str, Any] = Field(default_factory=dict, description="the run's inputs")

    @model_validator(mode="after")
    def _one_source(self) -> SubmitRun:
        if (self.workflow is None) == (self.workflow_name is None):
            raise ValueError("give exactly one of workflow (a definition) or workflow_name")
        return self


@router.post("", status_code=201)
async def submit_run(body: SubmitRun, engine: EngineDep, response: Response) -> dict[str, str]:
    workflow = await _workflow_for(engine.store, body)
    run_id = await engine.submit(workflow, body.inputs)
    response.headers["Location"] = f"/v1/runs/{run_id}"
    return {"run_id": run_id}


async def _workflow_for(store: Store, body: SubmitRun) -> Workflow:
    if body.workflow is not None:
        # Validation may import the modules that `call:` names: off the loop, like any import.
        return await asyncio.to_thread(parse_workflow, body.workflow, "workflow")
    assert body.workflow_name is not None
    newest = await store.list_runs(workflow=body.workflow_name, limit=1)
    if not newest:
        raise WorkflowNotFound(body.workflow_name)
    return Workflow.model_validate(await store.get_definition(newest[0].definition_digest))


@router.get("/{run_id}")
async def get_run(run_id: str, engine: EngineDep) -> RunSummary:
    return await engine.summary(run_id)


@router.get("")
async def list_runs(
    engine: EngineDep,
    status: Annotated[list[str] | None, Query(description="repeatable or comma-separated")] = None,
    workflow: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 50,
) -> dict[str, list[dict[str, Any]]]:
    """Runs, newest first."""
    rows = await engine.store.list_runs(
        statuses=_statuses(status) or None, workflow=workflow, limit=limit
    )
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
async def cancel_run(run_id: str, engine: EngineDep) -> dict[str, Any]:
    """Accepted, not done: running steps are cancelled and compensation runs first."""
    await engine.cancel(run_id)
    return {"run_id": run_id, "cancel_requested": True}


@router.post("/{run_id}/signals/{name}", status_code=202)
async def signal_run(
    run_id: str, name: str, engine: EngineDep, payload: Annotated[Any, Body()] = None
) -> dict[str, Any]:
    """The JSON body is the payload a `wait` step's output becomes; none gives null."""
    await engine.signal(run_id, name, payload)
    return {"run_id": run_id, "signal": name}
