"""`podium schedule add / list / remove` and `podium scheduler`: delayed and periodic runs.

A schedule keeps the validated workflow and inputs in the store; any scheduler fires it.
"""

from __future__ import annotations

import asyncio
import signal
from dataclasses import replace
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

import typer

from podium.cli.client import client_for, remote_inputs
from podium.cli.common import (
    BusOption,
    DrainOption,
    InputsFileOption,
    InputsJsonOption,
    InputsOption,
    JsonOption,
    ServerOption,
    StoreOption,
    UsageProblem,
    drain_engine,
    guarded,
    local_actor,
    note,
    open_engine,
    opened_store,
    out,
    print_json,
    run_async,
    settings_for,
)
from podium.cli.render import new_table
from podium.cli.run import FileArgument, gather_inputs, load_workflow, registered_name
from podium.clock import SYSTEM_CLOCK
from podium.control.schedules import (
    ScheduleSpecInvalid,
    Spec,
    candidate_names,
    first_fire,
    parse_spec,
)
from podium.errors import PodiumError
from podium.events import audit_event, new_id
from podium.redact import redact_url_password
from podium.settings import Settings
from podium.store.documents import schedule_json
from podium.store.schedules import Schedule

if TYPE_CHECKING:
    from podium.engine.scheduler import Scheduler

schedule_app = typer.Typer(
    help="Delayed and periodic runs: add, list and remove schedules (`podium scheduler` fires"
    " them).",
    no_args_is_help=True, pretty_exceptions_enable=False,
)
KeyArgument = Annotated[str, typer.Argument(help="Schedule id or name")]


@schedule_app.command("add")
@guarded
def add_command(
    file: FileArgument,
    cron: Annotated[
        str | None,
        typer.Option("--cron", metavar="EXPR",
                     help="Cron expression, e.g. '*/15 * * * *' (6 fields: seconds last)"),
    ] = None,
    at: Annotated[
        str | None,
        typer.Option("--at", metavar="TIME",
                     help="Run once at this ISO 8601 time (no offset: UTC)"),
    ] = None,
    every: Annotated[
        str | None,
        typer.Option("--every", metavar="DUR", help="Run every DUR (e.g. 30s, 10m, 1h)"),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option("--name", help="Schedule name (default: the workflow's name)"),
    ] = None,
    tz: Annotated[
        str, typer.Option("--tz", metavar="ZONE", help="Time zone of --cron (IANA name)")
    ] = "UTC",
    inputs: InputsOption = None,
    inputs_json: InputsJsonOption = None,
    inputs_file: InputsFileOption = None,
    json_output: JsonOption = False,
    store: StoreOption = None,
    server: ServerOption = None,
) -> None:
    """Schedule a workflow: exactly one of --cron, --at, --every. Nothing is stored if invalid.
    With a server, FILE is the name of a workflow registered there."""
    now = SYSTEM_CLOCK.now()
    spec = _spec(cron, at, every, tz, now)
    if name is not None and not name.strip():
        raise UsageProblem("--name: a schedule name cannot be empty")
    client = client_for(server)
    if client is not None:
        workflow_name = registered_name(file, client)
        with client:
            values = remote_inputs(client, workflow_name, inputs or [], inputs_json, inputs_file)
            body = {
                "workflow": workflow_name, spec.kind: spec.text, "timezone": spec.timezone,
                "inputs": values, "name": name,
            }
            document: dict[str, Any] = client.post("/v1/schedules", body)
        _added(document, json_output)
        return
    settings = settings_for(store, None)
    workflow = load_workflow(file, settings)
    values = gather_inputs(workflow, inputs or [], inputs_json, inputs_file)
    schedule = Schedule(
        schedule_id=new_id(), name=(name or workflow.name).strip(), workflow=workflow.name,
        definition=workflow.to_json(), inputs=values, kind=spec.kind, spec=spec.text,
        timezone=spec.timezone, next_at=first_fire(spec, now), created_at=now,
    )
    added = run_async(_add(settings, schedule, derived=name is None))
    _added(schedule_json(added), json_output)


def _added(s: dict[str, Any], json_output: bool) -> None:
    if json_output:
        print_json(s)
    else:
        note(f"schedule {s['name']} ({s['schedule_id']}) added: {_describe(s)},"
             f" first run {_when(s['next_at'])}; `podium scheduler` or `podium serve` fires it")


def _spec(cron: str | None, at: str | None, every: str | None, tz: str, now: float) -> Spec:
    given = [(kind, text) for kind, text in (("cron", cron), ("at", at), ("every", every))
             if text is not None]
    if len(given) != 1:
        raise UsageProblem("give exactly one of --cron EXPR, --at TIME, --every DUR")
    kind, text = given[0]
    try:
        return parse_spec(kind, text, tz, now=now)
    except ScheduleSpecInvalid as exc:
        raise UsageProblem(str(exc)) from None


async def _add(settings: Settings, schedule: Schedule, *, derived: bool) -> Schedule:
    """Adds the schedule; a derived name taken already becomes `name-2`, `name-3`..."""
    async with opened_store(settings) as store:
        for name in candidate_names(schedule.name, derived=derived):
            named = replace(schedule, name=name)
            audit = audit_event(local_actor(), "schedule.add", name, workflow=named.workflow,
                                spec=named.spec)
            if await store.add_schedule(named, audit=audit):
                return named
    hint = "give a --name" if derived else "pick another --name or `podium schedule remove` it"
    raise UsageProblem(f"--name: a schedule named {schedule.name!r} exists already; {hint}")


@schedule_app.command("list")
@guarded
def list_command(
    json_output: JsonOption = False, store: StoreOption = None, server: ServerOption = None
) -> None:
    """List schedules: spec, next fire, last fire and last run."""
    client = client_for(server)
    if client is not None:
        with client:
            schedules: list[dict[str, Any]] = client.get("/v1/schedules")
    else:
        schedules = run_async(_list(settings_for(store, None)))
    if json_output:
        print_json(schedules)
    elif schedules:
        table = new_table(
            "schedules",
            ("id", "name", "workflow", "spec", "next fire (UTC)", "last fired (UTC)", "last run"),
            whole=["last run"] if any(s["last_run_id"] for s in schedules) else [],
        )
        for s in schedules:
            table.add_row(
                s["schedule_id"], s["name"], s["workflow"], _describe(s),
                _when(s["next_at"], done=s["status"] == "done"), _when(s["last_fired_at"]),
                s["last_run_id"] or "—",
            )
        out.print(table)
    else:
        note("no schedules; `podium schedule add FILE --cron EXPR` adds one")


async def _list(settings: Settings) -> list[dict[str, Any]]:
    async with opened_store(settings) as store:
        return [schedule_json(s) for s in await store.list_schedules()]


@schedule_app.command("remove")
@guarded
def remove_command(key: KeyArgument, json_output: JsonOption = False,
                   store: StoreOption = None, server: ServerOption = None) -> None:
    """Remove a schedule (by id or name); runs it already started are not touched."""
    client = client_for(server)
    if client is not None:
        with client:
            removed: dict[str, Any] = client.delete(f"/v1/schedules/{quote(key, safe='')}")
    else:
        removed = schedule_json(run_async(_remove(settings_for(store, None), key)))
    if json_output:
        print_json(removed)
    else:
        note(f"schedule {removed['name']} ({removed['schedule_id']}) removed")


async def _remove(settings: Settings, key: str) -> Schedule:
    async with opened_store(settings) as store:
        audit = audit_event(local_actor(), "schedule.remove", key)
        removed = await store.remove_schedule(key, audit)
    if removed is None:
        raise PodiumError(f"no schedule with id or name {key!r}; `podium schedule list` lists them")
    return removed


def _describe(s: dict[str, Any]) -> str:
    zone = f" ({s['timezone']})" if s["kind"] == "cron" and s["timezone"] != "UTC" else ""
    return f"{s['kind']} {s['spec']}{zone}"


def _when(iso: str | None, *, done: bool = False) -> str:
    if iso is None:
        return "done" if done else "—"
    return iso[:19].replace("T", " ")


# -- podium scheduler --------------------------------------------------------------------------


@guarded
def scheduler_command(
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", min=1,
                          help="Runs executed at once (embedded bus; workers run them otherwise)")
    ] = 100,
    drain_s: DrainOption = 30.0,
    store: StoreOption = None,
    bus: BusOption = None,
) -> None:
    """Fire schedules until SIGTERM; with an in-process bus, also run what they submit."""
    settings = settings_for(store, bus).model_copy(update={"max_active_runs": concurrency})
    run_async(_scheduler(settings, drain_s))


async def _scheduler(settings: Settings, drain_s: float) -> None:
    from podium.engine.scheduler import Scheduler

    async with open_engine(settings) as engine:
        embedded = not engine.bus.distributed
        if embedded:  # it executes runs, so it resumes those a previous process left behind
            resumed = await engine.recover()
            if resumed:
                note(f"resumed {len(resumed)} unfinished run(s)")
        scheduler = Scheduler(engine, on_fired=_say_fired)
        hurry = asyncio.Event()
        _on_signals(scheduler, hurry)
        role = "runs execute here" if embedded else "workers execute runs"
        note(f"podium scheduler started ({role}); store {redact_url_password(settings.store)}")
        await scheduler.run()
        if embedded:
            await drain_engine(engine, drain_s, hurry)
        note("podium scheduler stopped")


def _say_fired(fired: dict[str, Any]) -> None:
    """A line per fire: what an operator watching `podium scheduler` wants to see."""
    note(f"schedule {fired['schedule']} fired (tick {fired['tick']}): run {fired['run_id']}")


def _on_signals(scheduler: Scheduler, hurry: asyncio.Event) -> None:
    """SIGTERM/SIGINT: stop firing, then drain; a second signal: stop draining."""
    signals = [0]

    def stop() -> None:
        signals[0] += 1
        scheduler.stop()
        if signals[0] > 1:
            hurry.set()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop)
