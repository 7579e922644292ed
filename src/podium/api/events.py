"""`GET /v1/events`: the event stream as Server-Sent Events, of every run or of one.

The stream of one run ends after its `run.completed`; the stream of all runs never ends.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from podium.api.deps import EngineDep, StreamsDep
from podium.api.streams import stream_events
from podium.errors import RunNotFound

router = APIRouter(prefix="/v1", tags=["events"])

# Proxies must pass each event on at once instead of buffering the response (nginx reads
# X-Accel-Buffering).
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@router.get("/events", response_class=StreamingResponse)
async def events(
    engine: EngineDep, streams: StreamsDep, run_id: str | None = None
) -> StreamingResponse:
    if run_id is not None and await engine.store.get_run(run_id) is None:
        raise RunNotFound(run_id)  # a 404 now, rather than an empty stream
    return StreamingResponse(
        stream_events(engine.store, engine.bus, streams, run_id),
        media_type="text/event-stream",
        headers=SSE_HEADERS,
    )
