"""`podium serve`: the HTTP API, and with an in-process bus also the engine behind it.

Embedded (`memory://`) it resumes unfinished runs and runs what it accepts; with a distributed
bus it only submits and inspects, and workers execute. SIGTERM stops it gracefully.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from podium.cli.common import (
    BusOption,
    DrainOption,
    StoreOption,
    UsageProblem,
    drain_engine,
    guarded,
    note,
    open_engine,
    run_async,
    settings_for,
)
from podium.clock import SYSTEM_CLOCK
from podium.errors import PodiumError
from podium.redact import redact_url_password
from podium.settings import Settings

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

    from podium.api.streams import EventStreams
    from podium.engine.engine import Engine

GRACE_S = 10  # how long open requests get to finish once the server stops listening
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
FIRST_KEY = "podium keys create --name admin --role admin --expires 90d"


@dataclass(frozen=True)
class Exposure:
    """Who may reach the server and how: `podium serve`'s security flags, checked once."""

    host: str
    auth: bool = True
    allowed_hosts: tuple[str, ...] = ()
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    @property
    def hosts(self) -> tuple[str, ...]:
        """Host names answered to: those given, else the bind address and the loopback names."""
        return self.allowed_hosts or tuple(dict.fromkeys((self.host, *LOOPBACK_NAMES)))


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


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
    allowed_hosts: Annotated[list[str] | None, typer.Option(
        "--allowed-host", metavar="NAME",
        help="A Host name clients use to reach this server (repeatable; default: the bind"
        " address, localhost, 127.0.0.1, ::1); other names get 400",
    )] = None,
    tls_cert: Annotated[Path | None, typer.Option(
        "--tls-cert", metavar="FILE", help="Serve HTTPS with this certificate (PEM)")] = None,
    tls_key: Annotated[Path | None, typer.Option(
        "--tls-key", metavar="FILE", help="The certificate's private key (PEM)")] = None,
    insecure_no_auth: Annotated[bool, typer.Option(
        "--insecure-no-auth",
        help="No API keys: every request acts as an admin named anonymous (test networks only)",
    )] = False,
    store: StoreOption = None,
    bus: BusOption = None,
) -> None:
    """Serve the HTTP API until SIGTERM; with an in-process bus, also run the workflows."""
    exposure = _exposure(host, insecure_no_auth, allowed_hosts, tls_cert, tls_key)
    settings = settings_for(store, bus).model_copy(update={"max_active_runs": concurrency})
    run_async(_serve(settings, host, port, drain_s, schedules, exposure))


def _exposure(
    host: str, insecure: bool, allowed: list[str] | None, cert: Path | None, key: Path | None
) -> Exposure:
    if (cert is None) != (key is None):
        raise UsageProblem("give both --tls-cert and --tls-key, or neither")
    for path in (cert, key):
        if path is not None and not path.is_file():
            raise UsageProblem(f"no such file: {path}")
    return Exposure(host, not insecure, tuple(allowed or ()), cert, key)


async def _check_keys(engine: Engine, exposure: Exposure) -> None:
    """Auth with no usable key is a server nobody can use; on a network, the usual way out
    would be --insecure-no-auth by reflex, so it is refused with the right step instead."""
    if not exposure.auth:
        where = "on loopback only" if exposure.loopback else f"on {exposure.host}, a NETWORK"
        note(f"WARNING: --insecure-no-auth: every request acts as an admin ({where})")
        return
    now = SYSTEM_CLOCK.now()
    usable = [
        k for k in await engine.store.list_keys()
        if k.revoked_at is None and (k.expires_at is None or k.expires_at > now)
    ]
    if usable:
        return
    if not exposure.loopback:
        raise UsageProblem(
            f"refusing to serve on {exposure.host} without auth: the store holds no usable API"
            f" key; create one with `{FIRST_KEY}` (or pass --insecure-no-auth)"
        )
    note(f"no API key exists yet: every request but /healthz will get 401; create the first"
         f" admin key with `{FIRST_KEY}`")


async def _serve(
    settings: Settings, host: str, port: int, drain_s: float, schedules: bool = True,
    exposure: Exposure | None = None,
) -> None:
    # Imported here: other commands should not pay for loading FastAPI and uvicorn.
    import uvicorn

    from podium.api.app import ApiOptions, create_app
    from podium.api.streams import EventStreams
    from podium.engine.scheduler import Scheduler
    from podium.observe.metrics import Metrics

    exposure = exposure or Exposure(host)
    async with open_engine(settings) as engine:
        Metrics.attach(engine)  # `/metrics` counts from the start, recovered runs included
        await _check_keys(engine, exposure)
        if not exposure.loopback and not (
            exposure.allowed_hosts or settings.control.api.allowed_hosts
        ):
            note(f"answering only to the Host names {', '.join(exposure.hosts)};"
                 " add the names clients use with --allowed-host")
        embedded = not engine.bus.distributed
        if embedded:  # serve resumes unfinished runs when it executes them itself
            resumed = await engine.recover()
            if resumed:
                note(f"resumed {len(resumed)} unfinished run(s)")
        streams = EventStreams()
        # --allowed-host wins over `[api] allowed_hosts`; neither: the bind and loopback names.
        hosts = (exposure.allowed_hosts or tuple(settings.control.api.allowed_hosts)
                 or exposure.hosts)
        options = ApiOptions(
            auth=exposure.auth, allowed_hosts=hosts, tls=exposure.tls_cert is not None
        )
        app = create_app(engine, streams=streams, options=options)
        config = uvicorn.Config(
            app, host=host, port=port,
            lifespan="off", timeout_graceful_shutdown=GRACE_S, log_level="info",
            ssl_certfile=exposure.tls_cert, ssl_keyfile=exposure.tls_key,
        )
        stopper = _Stopper(_own_signals_server(config), streams)
        stopper.install()
        # A background duty's failure stops the engine: serve stops too, and exits 1 naming it.
        engine.tasks.start(_stop_when_halted(engine, stopper), name="serve-watch")
        role = "runs execute here" if embedded else "workers execute runs"
        scheme = "https" if exposure.tls_cert else "http"
        shown = f"[{host}]" if ":" in host else host
        note(f"podium serve on {scheme}://{shown}:{port} ({role});"
             f" store {redact_url_password(settings.store)}")
        note(f"dashboard: {dashboard_url(f'{scheme}://{shown}:{port}', exposure, app)}")
        # The scheduler stops with the HTTP side, before the drain: nothing new starts then.
        scheduling: contextlib.AbstractAsyncContextManager[object] = (
            Scheduler(engine) if schedules else contextlib.nullcontext()
        )
        async with scheduling:
            await _listen(stopper.server, host, port)
        if embedded:
            await drain_engine(engine, drain_s, stopper.hurry)
        note("podium serve stopped")


def dashboard_url(base: str, exposure: Exposure, app: FastAPI) -> str:
    """The dashboard's address; on loopback with auth it carries a one-time login token (as
    Jupyter's does), printed here only, so the local user needs no key to look in."""
    if not (exposure.auth and exposure.loopback):
        return f"{base}/ui/"
    token = app.state.sessions.new_login_token()
    return f"{base}/ui/login?token={token}  (one-time login link, valid 10 minutes)"


async def _stop_when_halted(engine: Engine, stopper: _Stopper) -> None:
    await engine.halted.wait()
    stopper.stop()


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
