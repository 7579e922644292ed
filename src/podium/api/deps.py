"""What route handlers share: the running engine, taken from the app it was built into.

`create_app` puts the engine on `app.state`; handlers ask for it with `EngineDep`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from podium.api.streams import EventStreams
from podium.engine.engine import Engine


def engine_of(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def streams_of(request: Request) -> EventStreams:
    streams: EventStreams = request.app.state.streams
    return streams


EngineDep = Annotated[Engine, Depends(engine_of)]
StreamsDep = Annotated[EventStreams, Depends(streams_of)]
