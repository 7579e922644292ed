"""`GET /v1/runs/{id}/events` and `GET /v1/events/log`: stored events as JSON, oldest first.

The same documents as `podium events [RUN] --json`; `/v1/events` streams live ones instead.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from podium.api.auth import Permission, Principal, permit
from podium.api.deps import EngineDep
from podium.api.errors import ERROR_RESPONSES
from podium.errors import RunNotFound
from podium.store.base import tail_events
from podium.store.documents import event_json
from podium.store.roles import EventLog

router = APIRouter(prefix="/v1", tags=["events"], responses=ERROR_RESPONSES)
PAGE = 1000
MAX_LAST = 10_000

# Bounded so a huge number is the client's 422, not a store overflow (64-bit integers).
AfterSeq = Annotated[
    int, Query(ge=0, le=2**62, description="Only events after this position in the log")
]
Limit = Annotated[int, Query(ge=1, le=PAGE, description="At most this many events")]
Last = Annotated[
    int | None,
    Query(ge=1, le=MAX_LAST, description="The last N events instead (after_seq is ignored)"),
]


@router.get("/runs/{run_id}/events")
async def run_events(
    run_id: str,
    engine: EngineDep,
    principal: Annotated[Principal, permit(Permission.RUNS_READ)],
    after_seq: AfterSeq = 0,
    limit: Limit = PAGE,
    last: Last = None,
) -> list[dict[str, Any]]:
    """One run's stored events."""
    row = await engine.store.get_run(run_id)
    if row is None or not principal.sees(row.workflow):
        raise RunNotFound(run_id)  # a run outside the key's scope is not there for it
    return await _events(engine.store, run_id, after_seq, limit, last)


@router.get("/events/log")
async def event_log(
    engine: EngineDep,
    principal: Annotated[Principal, permit(Permission.RUNS_READ)],
    after_seq: AfterSeq = 0,
    limit: Limit = PAGE,
    last: Last = None,
) -> list[dict[str, Any]]:
    """Every run's stored events (and the system's), in log order."""
    if principal.scope is not None:  # the log holds every workflow's events
        raise HTTPException(
            403, f"a key scoped to {principal.scope!r} reads events per run:"
            " GET /v1/runs/{run_id}/events",
        )
    return await _events(engine.store, None, after_seq, limit, last)


async def _events(
    store: EventLog, run_id: str | None, after_seq: int, limit: int, last: int | None
) -> list[dict[str, Any]]:
    if last is None:
        page = await store.list_events(run_id, after_seq, limit)
    else:
        page = await tail_events(store, run_id, last)
    return [event_json(seq, event) for seq, event in page]


