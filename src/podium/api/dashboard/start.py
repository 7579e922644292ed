"""Starting a run of a registered workflow from a form generated from its declared `inputs`:
a text box per string, a number box per number, a checkbox per boolean, JSON for the rest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse

from podium.api import runs, workflows
from podium.api.auth import Permission, Principal, permit
from podium.api.dashboard.forms import checked_form, flash
from podium.api.dashboard.gate import PREFIX
from podium.api.dashboard.render import page
from podium.api.deps import EngineDep
from podium.errors import PodiumError, WorkflowInvalid
from podium.model.workflow import InputSpec, Workflow

router = APIRouter(prefix=f"{PREFIX}/start", include_in_schema=False)
Submitter = Annotated[Principal, permit(Permission.RUNS_SUBMIT)]


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    required: bool
    default: str
    description: str

    @property
    def widget(self) -> str:
        return {"integer": "number", "number": "number", "boolean": "checkbox"}.get(
            self.type, "textarea" if self.type in ("object", "array") else "text")


def fields_of(workflow: Workflow) -> list[Field]:
    return [Field(name, spec.type, spec.required, _shown(spec), spec.description or "")
            for name, spec in workflow.inputs.items()]


def _shown(spec: InputSpec) -> str:
    if spec.default is None:
        return ""
    if spec.type in ("object", "array"):
        return json.dumps(spec.default)
    return str(spec.default).lower() if spec.type == "boolean" else str(spec.default)


def inputs_of(workflow: Workflow, form: dict[str, str]) -> dict[str, Any]:
    """Typed values of the form's fields; empty ones are left out (the default applies)."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for name, spec in workflow.inputs.items():
        text = form.get(f"in_{name}", "")
        if spec.type == "boolean":
            values[name] = text == "on"
            continue
        if not text.strip():
            continue
        try:
            values[name] = _parsed(spec.type, text)
        except ValueError as exc:
            problems.append(f"error: inputs.{name}: {exc}")
    if problems:
        raise WorkflowInvalid(problems)
    return values


def _parsed(kind: str, text: str) -> Any:
    if kind == "integer":
        return int(text)
    if kind == "number":
        return float(text)
    if kind in ("object", "array"):
        return json.loads(text)
    return text


@router.get("", response_class=HTMLResponse)
async def choose(request: Request, engine: EngineDep, principal: Submitter) -> HTMLResponse:
    listed = await workflows.list_workflows(engine, principal, name=None, limit=200)
    names = sorted({w["name"] for w in listed["workflows"]})
    return page(request, "start.html", names=names, workflow=None, fields=[])


@router.get("/{name}", response_class=HTMLResponse)
async def form(request: Request, name: str, engine: EngineDep,
               principal: Submitter) -> HTMLResponse:
    workflow = await runs.registered_workflow(engine.store, principal, name)
    return page(request, "start.html", names=[], workflow=workflow, fields=fields_of(workflow))


@router.post("/{name}", response_model=None)
async def start(
    request: Request, name: str, engine: EngineDep, principal: Submitter,
    form: Annotated[dict[str, str], Depends(checked_form)],
) -> Response:
    workflow = await runs.registered_workflow(engine.store, principal, name)
    try:
        body = runs.SubmitRun(workflow_name=name, inputs=inputs_of(workflow, form))
        started = await runs.submit_run(body, engine, Response(), principal)
    except (PodiumError, RequestValidationError) as exc:
        flash(request, f"error: the run was not started: {exc}")
        return RedirectResponse(f"{PREFIX}/start/{name}", status_code=303)
    flash(request, f"run {started['run_id']} started")
    return RedirectResponse(f"{PREFIX}/runs/{started['run_id']}", status_code=303)
