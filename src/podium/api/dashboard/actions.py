"""The dashboard's buttons: each declares the API route's permission and calls that route's
own handler, so the checks, audit entries and errors are the API's.

Every action is a POST of a form carrying the session's CSRF token; it answers with a redirect
back (a message says what happened), or the API's error status when refused.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse

from podium.api import circuits, dlq, pauses, runs
from podium.api.auth import Permission, Principal, permit
from podium.api.dashboard.forms import back, checked_form, flash
from podium.api.dashboard.gate import PREFIX
from podium.api.deps import EngineDep
from podium.errors import PodiumError

router = APIRouter(prefix=PREFIX, include_in_schema=False)
Form = Annotated[dict[str, str], Depends(checked_form)]
MAX_PAYLOAD_CHARS = 64_000
MAX_NAME_CHARS = 200


async def _done(
    request: Request, form: dict[str, str], default: str, action: Awaitable[Any], ok: str
) -> RedirectResponse:
    try:
        await action
        flash(request, ok)
    except PodiumError as exc:
        flash(request, f"error: {exc}")
    except RequestValidationError as exc:
        flash(request, f"error: {exc.errors()[0].get('msg', 'invalid input')}")
    return RedirectResponse(back(form, default), status_code=303)


def _run_page(run_id: str) -> str:
    return f"{PREFIX}/runs/{run_id}"


@router.post("/runs/{run_id}/cancel")
async def cancel(
    request: Request, run_id: str, engine: EngineDep,
    principal: Annotated[Principal, permit(Permission.RUNS_CANCEL)], form: Form,
) -> RedirectResponse:
    return await _done(request, form, _run_page(run_id),
                       runs.cancel_run(run_id, engine, principal), "cancel requested")


@router.post("/runs/{run_id}/signal")
async def signal(
    request: Request, run_id: str, engine: EngineDep,
    principal: Annotated[Principal, permit(Permission.RUNS_SIGNAL)], form: Form,
) -> RedirectResponse:
    name = form.get("name", "").strip()
    text = form.get("payload", "").strip() or "null"
    try:
        if not name or len(name) > MAX_NAME_CHARS:
            raise ValueError(f"name the signal in 1 to {MAX_NAME_CHARS} characters")
        if len(text) > MAX_PAYLOAD_CHARS:
            raise ValueError(f"the payload is longer than {MAX_PAYLOAD_CHARS} characters")
        payload = json.loads(text)
    except ValueError as exc:  # JSONDecodeError is one
        flash(request, f"error: the signal was not sent: {exc}")
        return RedirectResponse(back(form, _run_page(run_id)), status_code=303)
    return await _done(request, form, _run_page(run_id),
                       runs.signal_run(run_id, name, engine, principal, payload),
                       f"signal {name} sent")


@router.post("/dlq/{run_id}/replay")
async def replay(
    request: Request, run_id: str, engine: EngineDep,
    principal: Annotated[Principal, permit(Permission.DLQ_WRITE)], form: Form,
) -> RedirectResponse:
    return await _done(request, form, _run_page(run_id),
                       dlq.replay(run_id, engine, principal), "replay started")


@router.post("/dlq/purge")
async def purge(
    request: Request, engine: EngineDep,
    principal: Annotated[Principal, permit(Permission.DLQ_WRITE)], form: Form,
) -> RedirectResponse:
    return await _done(request, form, f"{PREFIX}/system", dlq.purge(engine, principal),
                       "dead-letter queue purged")


@router.post("/pauses")
async def pause(
    request: Request, engine: EngineDep,
    principal: Annotated[Principal, permit(Permission.PAUSES_WRITE)], form: Form,
) -> Response:
    scope, name = form.get("scope", ""), form.get("name", "").strip()
    if scope not in ("workflow", "agent") or not 0 < len(name) <= MAX_NAME_CHARS:
        flash(request, "error: pause a workflow or an agent, by name")
        return RedirectResponse(back(form, f"{PREFIX}/system"), status_code=303)
    resume = form.get("action") == "resume"
    call = (pauses.resume if resume else pauses.pause)(scope, name, engine, principal)  # type: ignore[arg-type]
    verb = "resumed" if resume else "paused"
    return await _done(request, form, f"{PREFIX}/system", call, f"{scope} {name} {verb}")


@router.post("/circuits")
async def circuit(
    request: Request, engine: EngineDep,
    principal: Annotated[Principal, permit(Permission.CIRCUITS_WRITE)], form: Form,
) -> Response:
    key = form.get("key", "").strip()
    if not 0 < len(key) <= MAX_NAME_CHARS:
        flash(request, f"error: name the circuit in 1 to {MAX_NAME_CHARS} characters")
        return RedirectResponse(back(form, f"{PREFIX}/system"), status_code=303)
    opening = form.get("action") == "open"
    call = (circuits.open_circuit if opening else circuits.close_circuit)(key, engine, principal)
    verb = "opened" if opening else "closed"
    return await _done(request, form, f"{PREFIX}/system", call, f"circuit {key} {verb}")
