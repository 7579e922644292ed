"""`podium serve`: the HTTP API, and with an in-process bus also the engine behind it.

Embedded (`memory://`) it resumes unfinished runs and runs what it accepts; with a distributed
bus it only submits and inspects, and workers execute. SIGTERM stops it gracefully.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import typer

from podium.cli.common import (
    BusOption,
    DrainOption,
    StoreOption,
    drain_engine,
    guarded,
    note,
    open_engine,
    run_async,
    settings_for,
)
from podium.errors import PodiumError
from podium.redact import redact_url_password
from podium.settings import Settings

if TYPE_CHECKING:
    import uvicorn

    from podium.api.streams import EventStreams

GRACE_S = 10  # how long open requests get to finish once the server stops listening


@guarded
def serve_command(
    host: Annotated[str, typer.Option("--host", help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port")] = 8080,
    concurrency: Annotated[
        int,
        typer.Option("--concurrency", "-c", min=1,
                     help="Runs executed at once (embedded bus only; workers run them otherwise)"),
    ] = 100,
    drain_s: DrainOption = 30.0,
    schedules: Annotated[
        bool,
        typer.Option("--scheduler/--no-scheduler",
                     help="Also fire schedules (`podium schedule`) from this process"),
    ] = True,
    store: StoreOption = None,
    bus: BusOption = None,
) -> None:
    """Serve the HTTP API until SIGTERM; with an in-process bus, also run the workflows."""
    settings = settings_for(store, bus).model_copy(update={"max_active_runs": concurrency})
    run_async(_serve(settings, host, port, drain_s, schedules))


async def _serve(
    settings: Settings, host: str, port: int, drain_s: float, schedules: bool = True
) -> None:
    # Imported here: other commands should not pay for loading FastAPI and uvicorn.
    import uvicorn

    from podium.api import create_app
    from podium.api.streams import EventStreams
    from podium.engine.scheduler import Scheduler

    async with open_engine(settings) as engine:
        embedded = not engine.bus.distributed
        if embedded:  # DESIGN §7: serve resumes unfinished runs when it executes them itself
            resumed = await engine.recover()
            if resumed:
                note(f"resumed {len(resumed)} unfinished run(s)")
        streams = EventStreams()
        config = uvicorn.Config(
            create_app(engine, streams=streams), host=host, port=port, lifespan="off",
            timeout_graceful_shutdown=GRACE_S, log_level="info",
        )
        stopper = _Stopper(_own_signals_server(config), streams)
        stopper.install()
        role = "runs execute here" if embedded else "workers execute runs"
        store = redact_url_password(settings.store)
        note(f"podium serve on http://{host}:{port} ({role}); store {store}")
        # The scheduler stops with the HTTP side, before the drain: nothing new starts then.
        scheduling: contextlib.AbstractAsyncContextManager[object] = (
            Scheduler(engine) if schedules else contextlib.nullcontext()
        )
        async with scheduling:
            await _listen(stopper.server, host, port)
        if embedded:
            await drain_engine(engine, drain_s, stopper.hurry)
        note("podium serve stopped")


def _own_signals_server(config: uvicorn.Config) -> uvicorn.Server:
    """uvicorn's Server without its signal handling: podium's handlers stop the HTTP side
    first, then the engine drains; uvicorn's would re-raise SIGTERM after it, killing the drain."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return Server(config)


class _Stopper:
    """SIGTERM/SIGINT: stop listening, end event streams, drain. A second signal: hurry."""

    def __init__(self, server: uvicorn.Server, streams: EventStreams) -> None:
        self.server = server
        self.streams = streams
        self.hurry = asyncio.Event()

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop)

    def stop(self) -> None:
        if self.server.should_exit:
            self.server.force_exit = True
            self.hurry.set()
        self.server.should_exit = True
        self.streams.close()


async def _listen(server: uvicorn.Server, host: str, port: int) -> None:
    try:
        await server.serve()
    except SystemExit:  # uvicorn's answer to a port in use; it logged the reason already
        raise PodiumError(f"cannot serve on {host}:{port}; see the message above") from None
