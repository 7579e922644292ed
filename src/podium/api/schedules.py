"""`/v1/schedules`: delayed and periodic runs of REGISTERED workflows (never a file path).

Documents match `podium schedule list --json`; adding and removing are audited.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field

from podium.api.auth import Permission, Principal, permit
from podium.api.deps import EngineDep
from podium.api.errors import ERROR_RESPONSES, NotFound
from podium.control.schedules import ScheduleSpecInvalid, Spec, candidate_names, first_fire
from podium.control.schedules import parse_spec as _parse_spec
from podium.events import audit_event, new_id
from podium.model.inputs import resolve_inputs
from podium.model.workflow import Workflow
from podium.store.documents import schedule_json
from podium.store.roles import ScheduleStore
from podium.store.schedules import Schedule

router = APIRouter(prefix="/v1/schedules", tags=["schedules"], responses=ERROR_RESPONSES)

Writer = Annotated[Principal, permit(Permission.SCHEDULES_WRITE)]


class AddSchedule(BaseModel):
    """Exactly one of `cron`, `every`, `at`; the workflow by its registered name."""

    model_config = ConfigDict(extra="forbid")

    workflow: str = Field(min_length=1, description="a registered workflow's name")
    cron: str | None = Field(None, description="cron expression, e.g. '*/15 * * * *'")
    every: str | None = Field(None, description="a duration: 30s, 10m, 1h")
    at: str | None = Field(None, description="ISO 8601 time, once (no offset: UTC)")
    timezone: str = Field("UTC", description="IANA zone of `cron`")
    inputs: dict[str, Any] = Field(default_factory=dict, description="the runs' inputs")
    name: str | None = Field(None, description="default: the workflow's name")


@router.get("")
async def list_schedules(
    engine: EngineDep, principal: Annotated[Principal, permit(Permission.SYSTEM_READ)]
) -> list[dict[str, Any]]:
    return [schedule_json(s) for s in await engine.store.list_schedules()]


@router.post("", status_code=201)
async def add_schedule(
    body: AddSchedule, engine: EngineDep, principal: Writer, response: Response
) -> dict[str, Any]:
    """Adds it; nothing is stored if the spec, the workflow or the inputs are invalid."""
    now = engine.clock.now()
    spec = _spec(body, now)
    if body.name is not None and not body.name.strip():
        raise _invalid("name", "a schedule name cannot be empty")
    found = await engine.store.get_registered(body.workflow)
    if found is None or not principal.sees(body.workflow):
        raise NotFound(f"no workflow named {body.workflow!r} is registered; POST /v1/workflows")
    workflow = Workflow.model_validate(found[1])
    schedule = Schedule(
        schedule_id=new_id(), name=(body.name or workflow.name).strip(), workflow=workflow.name,
        definition=workflow.to_json(), inputs=resolve_inputs(workflow, body.inputs),
        kind=spec.kind, spec=spec.text, timezone=spec.timezone, next_at=first_fire(spec, now),
        created_at=now, trusted=False,
    )
    added = await _add(engine.store, principal, schedule, derived=body.name is None)
    response.headers["Location"] = f"/v1/schedules/{added.schedule_id}"
    return schedule_json(added)


@router.delete("/{key}")
async def remove_schedule(key: str, engine: EngineDep, principal: Writer) -> dict[str, Any]:
    """Removes the schedule with this id (else name); runs it started are not touched."""
    audit = audit_event(principal.actor, "schedule.remove", key)
    removed = await engine.store.remove_schedule(key, audit=audit)
    if removed is None:
        raise NotFound(f"no schedule with id or name {key!r}; GET /v1/schedules lists them")
    return schedule_json(removed)


def _spec(body: AddSchedule, now: float) -> Spec:
    given = [(kind, text) for kind, text in (("cron", body.cron), ("at", body.at),
                                             ("every", body.every)) if text is not None]
    if len(given) != 1:
        raise _invalid("cron", "give exactly one of cron, at, every")
    kind, text = given[0]
    try:
        return _parse_spec(kind, text, body.timezone, now=now)
    except ScheduleSpecInvalid as exc:
        field = "timezone" if exc.option == "tz" else exc.option
        raise _invalid(field, str(exc).removeprefix(f"--{exc.option}: ")) from None


async def _add(
    store: ScheduleStore, principal: Principal, schedule: Schedule, *, derived: bool
) -> Schedule:
    """A name derived from the workflow's that is taken becomes `name-2`, `name-3`..."""
    for name in candidate_names(schedule.name, derived=derived):
        named = replace(schedule, name=name)
        audit = audit_event(
            principal.actor, "schedule.add", name, workflow=named.workflow, spec=named.spec
        )
        if await store.add_schedule(named, audit=audit):
            return named
    hint = "give a name" if derived else "pick another name or remove that schedule"
    raise _invalid("name", f"a schedule named {schedule.name!r} exists already; {hint}")


def _invalid(field: str, message: str) -> RequestValidationError:
    return RequestValidationError(
        [{"loc": ("body", field), "type": "value_error", "msg": message}]
    )
