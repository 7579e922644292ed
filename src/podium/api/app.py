"""`create_app(engine)`: the FastAPI app of DESIGN §1 `api`, over an engine already running.

The engine's lifetime belongs to the caller (`podium serve`, a test), not to the app.
"""

from __future__ import annotations

from fastapi import FastAPI

from podium.api import circuits, dlq, events, health, history, pauses, runs, schedules, system
from podium.api.errors import install_error_handlers
from podium.api.streams import EventStreams
from podium.engine.engine import Engine


def create_app(engine: Engine, *, streams: EventStreams | None = None) -> FastAPI:
    """The HTTP API over `engine`; `streams` (to close SSE streams on shutdown) is made if
    not given, and kept on `app.state.streams`."""
    app = FastAPI(
        title="podium",
        summary="Durable orchestration engine for AI-agent and workflow pipelines",
        version="1",
    )
    app.state.engine = engine
    app.state.streams = streams or EventStreams()
    install_error_handlers(app)
    for module in (runs, history, events, dlq, pauses, circuits, schedules, system, health):
        app.include_router(module.router)
    return app
