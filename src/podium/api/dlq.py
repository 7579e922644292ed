"""`/v1/dlq`: the dead-letter queue: list, show, replay (the engine resumes the run) and purge.

Documents match `podium dlq list|show --json`; replay and purge are audited with their actor.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from podium.api.auth import Permission, Principal, permit
from podium.api.deps import EngineDep
from podium.api.errors import ERROR_RESPONSES, NotFound
from podium.engine.engine import Engine
from podium.events import audit_event
from podium.store.documents import dlq_json
from podium.store.records import DlqEntry

router = APIRouter(prefix="/v1/dlq", tags=["dlq"], responses=ERROR_RESPONSES)
MAX_LIST = 1000

Reader = Annotated[Principal, permit(Permission.SYSTEM_READ)]
Writer = Annotated[Principal, permit(Permission.DLQ_WRITE)]


@router.get("")
async def list_dlq(
    engine: EngineDep, principal: Reader, limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 100
) -> list[dict[str, Any]]:
    """Dead-lettered runs, newest first."""
    return [dlq_json(entry) for entry in await engine.store.list_dlq(limit)]


@router.get("/{run_id}")
async def show_dlq(run_id: str, engine: EngineDep, principal: Reader) -> dict[str, Any]:
    """The entry, and the run's summary under `run`."""
    entry = await _entry(engine, run_id)
    summary = await engine.summary(run_id)
    return {**dlq_json(entry), "run": summary.model_dump(mode="json")}


@router.post("/{run_id}/replay", status_code=202)
async def replay(run_id: str, engine: EngineDep, principal: Writer) -> dict[str, Any]:
    """Accepted: the run resumes from its failed steps (same id, succeeded outputs reused),
    in this server's engine or, with a distributed bus, on a worker."""
    await _entry(engine, run_id)
    await engine.replay(run_id, actor=principal.actor)
    return {"run_id": run_id, "replayed": True}


@router.post("/purge")
async def purge(engine: EngineDep, principal: Writer) -> dict[str, int]:
    """Deletes every entry (the runs and their history stay)."""
    audit = audit_event(principal.actor, "dlq.purge", "dlq")
    return {"purged": await engine.store.purge_dlq(audit=audit)}


async def _entry(engine: Engine, run_id: str) -> DlqEntry:
    entry = await engine.store.get_dlq(run_id)
    if entry is None:
        raise NotFound(f"run {run_id} is not in the dead-letter queue; GET /v1/dlq lists it")
    return entry
