"""`podium worker`, `podium workers` and `podium db upgrade`: the distributed-mode commands.

A worker runs until SIGTERM/SIGINT, then drains: in-flight runs finish or are handed back.
"""

from __future__ import annotations

import asyncio
import importlib
import signal
from typing import Annotated

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
from podium.events import utc_iso
from podium.redact import redact_url_password
from podium.settings import Settings
from podium.steps.python import path_summary
from podium.store.records import FORGOTTEN_AFTER_S

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
) -> None:
    """Run queued workflows from the bus and the store until SIGTERM (then drain)."""
    settings = settings_for(store, bus).model_copy(update={"max_active_runs": concurrency})
    modules = check_serves(serves or [])
    run_async(_work(settings, concurrency, drain_s, modules))


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
    settings: Settings, concurrency: int, drain_s: float, modules: list[str]
) -> None:
    from podium.engine.worker import Worker

    async with open_engine(settings) as engine:
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
