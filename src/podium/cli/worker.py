"""`podium worker`, `podium workers` and `podium db upgrade`: the distributed-mode commands.

A worker runs until SIGTERM/SIGINT, then drains: in-flight runs finish or are handed back.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import signal
import socket
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from podium.cli.common import (
    BusOption,
    DrainOption,
    JsonOption,
    StoreOption,
    UsageProblem,
    guarded,
    note,
    open_engine,
    opened_store,
    out,
    print_json,
    run_async,
    settings_for,
)
from podium.clock import SYSTEM_CLOCK
from podium.errors import PodiumError
from podium.events import utc_iso
from podium.redact import redact_url_password
from podium.settings import Settings
from podium.steps.python import path_summary
from podium.store.records import FORGOTTEN_AFTER_S

if TYPE_CHECKING:
    from podium.engine.engine import Engine

ALIVE_AFTER_S = 10.0  # a worker silent for longer is listed as lost


@guarded
def worker_command(
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", min=1, help="Runs this worker executes at once")
    ] = 100,
    drain_s: DrainOption = 30.0,
    serves: Annotated[
        list[str] | None,
        typer.Option(
            "--serves", metavar="MODULES",
            help="Modules of python steps this worker must import (comma-separated,"
            " repeatable): checked at start, so a worker that cannot run them does not start",
        ),
    ] = None,
    store: StoreOption = None,
    bus: BusOption = None,
    metrics_port: Annotated[int | None, typer.Option(
        "--metrics-port", min=0, max=65535, help="Serve Prometheus metrics on this port")] = None,
    metrics_host: Annotated[str, typer.Option(
        "--metrics-host", help="Address of the metrics port (no key is asked there)",
    )] = "127.0.0.1",
) -> None:
    """Run queued workflows from the bus and the store until SIGTERM (then drain)."""
    settings = settings_for(store, bus).model_copy(update={"max_active_runs": concurrency})
    scrape = None if metrics_port is None else (metrics_host, metrics_port)
    modules = check_serves(serves or [])
    run_async(_work(settings, concurrency, drain_s, modules, scrape))


def check_serves(given: list[str]) -> list[str]:
    """Imports every module named in `--serves`; the first that fails is a usage error."""
    modules = [m.strip() for value in given for m in value.split(",") if m.strip()]
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:  # an import can raise anything; say which module and why
            raise UsageProblem(
                f"--serves: cannot import module {module!r} here: {exc}; {path_summary()}"
            ) from None
    return modules


async def _work(
    settings: Settings, concurrency: int, drain_s: float, modules: list[str],
    scrape: tuple[str, int] | None = None,
) -> None:
    from podium.engine.worker import Worker

    async with open_engine(settings) as engine, _metrics_server(engine, scrape):
        worker = Worker(
            engine, engine.store, engine.bus, concurrency=concurrency, drain_s=drain_s
        )
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, worker.stop)
        where = redact_url_password(settings.store)
        serving = f", serves {', '.join(modules)}" if modules else ""
        note(f"worker {engine.owner} started: concurrency {concurrency}, store {where}{serving}")
        await worker.run()
        note(f"worker {engine.owner} stopped")


@contextlib.asynccontextmanager
async def _metrics_server(engine: Engine, scrape: tuple[str, int] | None) -> AsyncIterator[None]:
    """prometheus_client's HTTP server on a thread, for the worker's life (if asked for)."""
    if scrape is None:
        yield
        return
    from podium.observe.metrics import Metrics

    metrics = Metrics.attach(engine)
    await metrics.state.refresh()  # learns the loop: scrapes from the server thread use it
    host, port = scrape
    try:
        server = metrics.serve(host, port)
    except socket.gaierror as exc:  # not an address: the option is wrong (exit 2)
        raise UsageProblem(f"--metrics-host: {host!r} is not an address ({exc.strerror})") from None
    except OSError as exc:  # in use, or not ours to bind
        raise PodiumError(f"cannot serve metrics on {host}:{port}: {exc.strerror}") from None
    shown = f"[{host}]" if ":" in host else host
    note(f"metrics on http://{shown}:{server.port}/metrics")
    try:
        yield
    finally:
        await asyncio.to_thread(server.close)


@guarded
def workers_command(json_output: JsonOption = False, store: StoreOption = None) -> None:
    """List workers with their last heartbeat."""
    run_async(_list_workers(settings_for(store, None), json_output))


async def _list_workers(settings: Settings, json_output: bool) -> None:
    now = SYSTEM_CLOCK.now()
    async with opened_store(settings) as store:
        workers = await store.list_workers(seen_since=now - FORGOTTEN_AFTER_S)
    rows = [
        {
            "worker_id": w.worker_id, "host": w.host, "pid": w.pid,
            "state": w.state if now - w.heartbeat_at < ALIVE_AFTER_S or w.state == "stopped"
            else "lost",
            "concurrency": w.concurrency, "active": w.active,
            "started_at": utc_iso(w.started_at), "heartbeat_at": utc_iso(w.heartbeat_at),
        }
        for w in workers
    ]
    if json_output:
        print_json(rows)
        return
    table = Table(title="workers")
    for column in ("worker", "state", "active", "heartbeat"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            str(row["worker_id"]), str(row["state"]),
            f"{row['active']}/{row['concurrency']}", str(row["heartbeat_at"]),
        )
    out.print(table)


db_app = typer.Typer(help="Store maintenance.", no_args_is_help=True)


@db_app.command("upgrade")
@guarded
def db_upgrade_command(store: StoreOption = None) -> None:
    """Apply the store's schema migrations (opening the store does it too)."""
    run_async(_upgrade(settings_for(store, None)))


async def _upgrade(settings: Settings) -> None:
    async with opened_store(settings) as store:
        before, now = store.schema_versions
    where = redact_url_password(settings.store)
    if before == now:
        note(f"{where}: schema up to date (version {now}); no migration applied")
    elif before == 0:
        note(f"{where}: new store: applied migrations 1 to {now} (schema version {now})")
    else:
        note(f"{where}: applied migrations {before + 1} to {now} (schema version {now})")
