"""`GET /v1/events`: the event stream as Server-Sent Events, of every run or of one.

The stream of one run ends after its `run.completed`; the stream of all runs never ends.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from podium.api.auth import Permission, Principal, forbidden, permit
from podium.api.deps import EngineDep, StreamsDep
from podium.api.errors import ERROR_RESPONSES
from podium.api.runs import visible_run
from podium.api.streams import stream_events

router = APIRouter(prefix="/v1", tags=["events"], responses=ERROR_RESPONSES)

# Proxies must pass each event on at once instead of buffering the response (nginx reads
# X-Accel-Buffering).
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@router.get("/events", response_class=StreamingResponse)
async def events(
    engine: EngineDep,
    streams: StreamsDep,
    principal: Annotated[Principal, permit(Permission.RUNS_READ)],
    run_id: str | None = None,
) -> StreamingResponse:
    """One run's events (`run_id`), or every event; a scoped key must name a run."""
    if run_id is not None:
        await visible_run(engine.store, principal, run_id)  # a 404 now, not an empty stream
    elif principal.scope is not None:
        raise forbidden("a key scoped to workflows must name a run (`run_id`)")
    return StreamingResponse(
        stream_events(engine.store, engine.bus, streams, run_id, engine.transient),
        media_type="text/event-stream",
        headers=SSE_HEADERS,
    )
