"""`podium dlq list / show / replay / purge`: the dead-letter queue of failed runs.

Replay resumes the same run from its failed steps, reusing succeeded outputs, and waits like `run`.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from podium.cli.client import client_for
from podium.cli.common import (
    EXIT_FAILED,
    BusOption,
    JsonOption,
    ServerOption,
    StoreOption,
    guarded,
    local_actor,
    note,
    open_engine,
    opened_store,
    out,
    print_json,
    require_run,
    run_async,
    settings_for,
    stored_plan,
)
from podium.cli.progress import Follower, pick_display
from podium.cli.render import dlq_table, status_view
from podium.cli.run import exit_code, follow_runs, show_summary
from podium.engine.summary import RunSummary, build_summary
from podium.errors import PodiumError
from podium.events import audit_event
from podium.plan import Plan
from podium.settings import Settings
from podium.store.documents import dlq_json

dlq_app = typer.Typer(
    help="The dead-letter queue: runs that failed, timed out or expired.",
    no_args_is_help=True, pretty_exceptions_enable=False,
)
RunArgument = Annotated[str, typer.Argument(help="Run id (DLQ entries are keyed by run id)")]


@dlq_app.command("list")
@guarded
def list_command(
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many entries")] = 100,
    json_output: JsonOption = False,
    store: StoreOption = None,
    bus: BusOption = None,
    server: ServerOption = None,
) -> None:
    """List dead-lettered runs, newest first."""
    client = client_for(server)
    if client is not None:
        with client:
            entries: list[dict[str, Any]] = client.get("/v1/dlq", {"limit": limit})
    else:
        entries = run_async(_list(settings_for(store, bus), limit))
    if json_output:
        print_json(entries)
    elif entries:
        out.print(dlq_table(entries))
    else:
        note("the dead-letter queue is empty")


async def _list(settings: Settings, limit: int) -> list[dict[str, Any]]:
    async with opened_store(settings) as store:
        return [dlq_json(e) for e in await store.list_dlq(limit)]


@dlq_app.command("show")
@guarded
def show_command(run_id: RunArgument, json_output: JsonOption = False,
                 store: StoreOption = None, bus: BusOption = None,
                 server: ServerOption = None) -> None:
    """Show a dead-lettered run: why it failed, and its steps."""
    client = client_for(server)
    plan: Plan | None = None
    if client is not None:
        with client:
            document: dict[str, Any] = client.get(f"/v1/dlq/{run_id}")
    else:
        document, plan = run_async(_show(settings_for(store, bus), run_id))
    if json_output:
        print_json(document)
    else:
        out.print(status_view(RunSummary.model_validate(document["run"]), plan))


async def _show(settings: Settings, run_id: str) -> tuple[dict[str, Any], Plan]:
    async with opened_store(settings) as store:
        entry = await store.get_dlq(run_id)
        if entry is None:
            raise PodiumError(f"run {run_id} is not in the dead-letter queue; `podium dlq list`")
        row = await require_run(store, run_id)
        _, plan = await stored_plan(store, row)
        summary = build_summary(row, plan.order, await store.get_steps(run_id))
    return {**dlq_json(entry), "run": summary.model_dump(mode="json")}, plan


@dlq_app.command("replay")
@guarded
def replay_command(run_id: RunArgument, json_output: JsonOption = False,
                   store: StoreOption = None, bus: BusOption = None,
                   server: ServerOption = None) -> None:
    """Resume a dead-lettered run from its failed steps (same id, succeeded outputs reused)."""
    client = client_for(server)
    if client is None:
        raise typer.Exit(run_async(_replay(settings_for(store, bus), run_id, json_output)))
    with client:
        client.post(f"/v1/dlq/{run_id}/replay")
        note(f"run {run_id} replayed on {client.where}; waiting for it to end")
        summary = RunSummary.model_validate(client.wait_final(run_id))
    show_summary(summary, None, json_output)
    raise typer.Exit(exit_code([summary]))


async def _replay(settings: Settings, run_id: str, json_output: bool) -> int:
    async with (
        open_engine(settings) as engine,
        Follower(engine.bus, pick_display(json_output)) as follower,
    ):
        await engine.replay(run_id, local_actor())
        result = await follow_runs(engine, follower, [run_id])
    if result is None:
        return EXIT_FAILED
    summaries, plans = result
    show_summary(summaries[0], plans[run_id], json_output)
    return exit_code(summaries)


@dlq_app.command("purge")
@guarded
def purge_command(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation")] = False,
    store: StoreOption = None,
    bus: BusOption = None,
    server: ServerOption = None,
) -> None:
    """Delete every dead-letter entry (the runs and their history stay)."""
    if not yes:
        try:
            typer.confirm("Delete every entry of the dead-letter queue?", abort=True, err=True)
        except typer.Abort:
            note("")  # the prompt left the line open
            note("error: purge not confirmed; nothing was deleted (--yes skips the question)")
            raise typer.Exit(EXIT_FAILED) from None
    client = client_for(server)
    if client is not None:
        with client:
            count: int = client.post("/v1/dlq/purge")["purged"]
    else:
        count = run_async(_purge(settings_for(store, bus)))
    out.print(f"purged {count} dead-letter entr{'y' if count == 1 else 'ies'}", markup=False)


async def _purge(settings: Settings) -> int:
    async with opened_store(settings) as store:
        return await store.purge_dlq(audit_event(local_actor(), "dlq.purge", "dlq"))
