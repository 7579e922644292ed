"""`podium runs`, `status`, `cancel`, `signal` and `events`: inspect and control runs.

Locally, reads go to the store and changes through an engine; with a server, through its API.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import Group

from podium.cli.client import Client, client_for
from podium.cli.common import (
    BusOption,
    JsonOption,
    ServerOption,
    StoreOption,
    UsageProblem,
    guarded,
    local_actor,
    note,
    open_engine,
    opened_store,
    out,
    parse_json_arg,
    print_json,
    require_run,
    run_async,
    settings_for,
    stored_plan,
)
from podium.cli.render import events_table, runs_table, status_view
from podium.clock import SYSTEM_CLOCK
from podium.engine.summary import RunSummary, build_summary
from podium.model.status import RUN_FINAL
from podium.plan import Plan
from podium.settings import Settings
from podium.store.base import tail_events
from podium.store.documents import event_json, run_json
from podium.store.records import RUN_STATUSES

RunArgument = Annotated[str, typer.Argument(help="Run id")]
CANCEL_WAIT_S = 10.0  # how long `cancel` watches a run another process is stopping
ALL_EVENTS = 10_000  # the most `GET /v1/runs/{id}/events?last=` hands out at once
REMOTE_POLL_S = 0.2  # how often `cancel` through the API looks at the stopping run


@guarded
def runs_command(
    status: Annotated[
        list[str] | None,
        typer.Option("--status", metavar="STATUS", help="Only runs with this status (repeatable)"),
    ] = None,
    workflow: Annotated[
        str | None, typer.Option("--workflow", metavar="NAME", help="Only runs of this workflow")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many runs")] = 50,
    json_output: JsonOption = False,
    store: StoreOption = None,
    bus: BusOption = None,
    server: ServerOption = None,
) -> None:
    """List runs, newest first."""
    statuses = [s.strip() for value in status or [] for s in value.split(",") if s.strip()]
    unknown = [s for s in statuses if s not in RUN_STATUSES]
    if unknown:
        raise UsageProblem(
            f"--status {unknown[0]!r} is not a run status; use one of {', '.join(RUN_STATUSES)}"
        )
    client = client_for(server)
    if client is not None:
        with client:
            runs = _remote_runs(client, statuses, workflow, limit)
    else:
        runs = run_async(_list_runs(settings_for(store, bus), statuses, workflow, limit))
    if json_output:
        print_json(runs)
    elif runs:
        out.print(runs_table(runs))
    else:
        note("no runs")


async def _list_runs(
    settings: Settings, statuses: list[str], workflow: str | None, limit: int
) -> list[dict[str, Any]]:
    async with opened_store(settings) as store:
        rows = await store.list_runs(statuses=statuses or None, workflow=workflow, limit=limit)
    return [run_json(row) for row in rows]


def _remote_runs(
    client: Client, statuses: list[str], workflow: str | None, limit: int
) -> list[dict[str, Any]]:
    params = {"status": ",".join(statuses) or None, "workflow": workflow, "limit": limit}
    listing = client.get("/v1/runs", params)
    return [_as_run_json(row) for row in listing["runs"]]


def _as_run_json(row: dict[str, Any]) -> dict[str, Any]:
    """A row of `GET /v1/runs` as `runs --json` prints it (the duration from its times)."""
    keys = (
        "run_id", "workflow", "workflow_version", "status", "priority", "created_at",
        "started_at", "finished_at",
    )
    document = {key: row.get(key) for key in keys}
    document["duration_s"] = row.get("duration_s", _duration(row))
    document["error"] = row.get("error")
    document["parent_run_id"] = row.get("parent_run_id")
    return document


def _duration(row: dict[str, Any]) -> float | None:
    if row.get("finished_at") is None:
        return None
    start = row.get("started_at") or row["created_at"]
    return round(_ts(row["finished_at"]) - _ts(start), 6)


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


# -- status -----------------------------------------------------------------------------------


@guarded
def status_command(
    run_id: RunArgument,
    json_output: JsonOption = False,
    events: Annotated[bool, typer.Option("--events", help="Also show the run's events")] = False,
    store: StoreOption = None,
    bus: BusOption = None,
    server: ServerOption = None,
) -> None:
    """Show a run: its status, steps, outputs' summary, and optionally its events."""
    client = client_for(server)
    if client is not None:
        with client:
            summary = RunSummary.model_validate(client.get(f"/v1/runs/{run_id}"))
            path = f"/v1/runs/{run_id}/events"
            history = client.get(path, {"last": ALL_EVENTS}) if events else []
        plan = None  # the server's plan; the steps are listed in their order instead
    else:
        summary, plan, history = run_async(_status(settings_for(store, bus), run_id, events))
    if json_output:
        document = summary.model_dump(mode="json")
        if events:
            document["events"] = history
        print_json(document)
        return
    view = status_view(summary, plan)
    out.print(Group(view, events_table(history, with_run=False)) if events else view)


async def _status(
    settings: Settings, run_id: str, with_events: bool
) -> tuple[RunSummary, Plan, list[dict[str, Any]]]:
    async with opened_store(settings) as store:
        row = await require_run(store, run_id)
        _, plan = await stored_plan(store, row)
        summary = build_summary(row, plan.order, await store.get_steps(run_id))
        events = await tail_events(store, run_id, None) if with_events else []
    return summary, plan, [event_json(seq, e) for seq, e in events]


# -- events -----------------------------------------------------------------------------------


@guarded
def events_command(
    run_id: Annotated[str | None, typer.Argument(help="Only this run's events")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="The last N events")] = 100,
    json_output: JsonOption = False,
    store: StoreOption = None,
    bus: BusOption = None,
    server: ServerOption = None,
) -> None:
    """The audit log: every state change as an event, oldest first."""
    client = client_for(server)
    if client is not None:
        path = "/v1/events/log" if run_id is None else f"/v1/runs/{run_id}/events"
        with client:
            events: list[dict[str, Any]] = client.get(path, {"last": limit})
    else:
        events = run_async(_events(settings_for(store, bus), run_id, limit))
    if json_output:
        print_json(events)
    elif events:
        out.print(events_table(events, with_run=run_id is None))
    else:
        note("no events")


async def _events(settings: Settings, run_id: str | None, limit: int) -> list[dict[str, Any]]:
    async with opened_store(settings) as store:
        if run_id is not None:
            await require_run(store, run_id)
        return [event_json(seq, e) for seq, e in await tail_events(store, run_id, limit)]


# -- cancel, signal -----------------------------------------------------------------------------


@guarded
def cancel_command(
    run_id: RunArgument, store: StoreOption = None, bus: BusOption = None,
    server: ServerOption = None,
) -> None:
    """Cancel a run: running steps stop, compensations run, status `cancelled`."""
    client = client_for(server)
    if client is None:
        run_async(_cancel(settings_for(store, bus), run_id))
        return
    with client:
        client.post(f"/v1/runs/{run_id}/cancel")
        deadline = SYSTEM_CLOCK.monotonic() + CANCEL_WAIT_S
        status = client.get(f"/v1/runs/{run_id}")["status"]
        while status not in RUN_FINAL and SYSTEM_CLOCK.monotonic() < deadline:
            time.sleep(REMOTE_POLL_S)
            status = client.get(f"/v1/runs/{run_id}")["status"]
    if status in RUN_FINAL:
        out.print(f"run {run_id}: {status}", markup=False)
    else:
        out.print(f"run {run_id}: still stopping; `podium status {run_id}` shows when it ends",
                  markup=False)


async def _cancel(settings: Settings, run_id: str) -> None:
    async with open_engine(settings) as engine:
        # A run no live process holds is taken over first, so its compensations run here.
        await engine.recover([run_id])
        if await engine.cancel(run_id, local_actor()):
            await engine.wait_done(run_id)
            row = await require_run(engine.store, run_id)
            out.print(f"run {run_id}: {row.status}", markup=False)
            return
        note(f"cancel requested; run {run_id} is held by another process, which will stop it")
        deadline = SYSTEM_CLOCK.monotonic() + CANCEL_WAIT_S
        while SYSTEM_CLOCK.monotonic() < deadline:
            row = await require_run(engine.store, run_id)
            if row.done:
                out.print(f"run {run_id}: {row.status}", markup=False)
                return
            await SYSTEM_CLOCK.sleep(settings.poll_interval_s)
        out.print(f"run {run_id}: still stopping; `podium status {run_id}` shows when it ends",
                  markup=False)


@guarded
def signal_command(
    run_id: RunArgument,
    name: Annotated[str, typer.Argument(help="Signal name (a wait step's `signal`)")],
    payload: Annotated[
        str | None, typer.Argument(metavar="[JSON]", help="The payload, as JSON")
    ] = None,
    store: StoreOption = None,
    bus: BusOption = None,
    server: ServerOption = None,
) -> None:
    """Send a signal to a run: approves a `wait` step; its output is the payload."""
    value = None if payload is None else parse_json_arg(payload, "the signal payload")
    client = client_for(server)
    if client is not None:
        with client:
            client.post(f"/v1/runs/{run_id}/signals/{name}", value)
    else:
        run_async(_signal(settings_for(store, bus), run_id, name, value))
    out.print(f"signal {name!r} sent to run {run_id}", markup=False)


async def _signal(settings: Settings, run_id: str, name: str, payload: object) -> None:
    async with open_engine(settings) as engine:
        await engine.signal(run_id, name, payload, local_actor())
