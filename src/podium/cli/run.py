"""`podium run`, `recover`, `plan` and `validate`: load a workflow, plan it, run it to the end.

Inputs are checked before the store is opened, so an invalid run leaves nothing behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from podium.cli.client import URL_VAR, Client, client_for, remote_inputs
from podium.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    SUCCESSFUL,
    BusOption,
    DetachOption,
    InputsFileOption,
    InputsJsonOption,
    InputsOption,
    JsonOption,
    ServerOption,
    StoreOption,
    UsageProblem,
    err,
    file_and_json_inputs,
    guarded,
    local_actor,
    note,
    open_engine,
    out,
    print_json,
    require_run,
    run_async,
    settings_for,
    stored_plan,
)
from podium.cli.progress import Follower, pick_display
from podium.cli.render import summaries_table, summary_panel
from podium.cli.target import load_target
from podium.cli.view import RunView
from podium.cli.waiting import watch_workers
from podium.engine.summary import RunSummary
from podium.events import new_id, utc_iso
from podium.model.advice import workflow_warnings
from podium.model.inputs import parse_cli_inputs, resolve_inputs
from podium.model.workflow import Workflow
from podium.observe.context import current_traceparent
from podium.plan import Plan, build_plan
from podium.plan.render import render_plan
from podium.settings import Settings
from podium.store.base import Store

if TYPE_CHECKING:
    from podium.engine.engine import Engine

FileArgument = Annotated[
    Path,
    typer.Argument(metavar="FILE|MODULE:NAME",
                   help="Workflow file (.yaml, .yml or .json), or a Python workflow module:name"),
]
RunTarget = Annotated[
    Path,
    typer.Argument(metavar="FILE|MODULE:NAME|NAME",
                   help="Workflow file (.yaml, .yml or .json), or a Python workflow module:name;"
                        " with a server, a registered name"),
]


@guarded
def run_command(
    file: RunTarget,
    inputs: InputsOption = None,
    inputs_json: InputsJsonOption = None,
    inputs_file: InputsFileOption = None,
    json_output: JsonOption = False,
    store: StoreOption = None,
    bus: BusOption = None,
    server: ServerOption = None,
    detach: DetachOption = False,
) -> None:
    """Plan, admit and run a workflow to the end in this process, with live progress; with a
    server (PODIUM_URL or --server), run a workflow registered there by name and wait for it."""
    client = client_for(server)
    if client is not None:
        name = registered_name(file, client)
        with client:
            code = _run_remote(
                client, name, inputs or [], inputs_json, inputs_file, json_output, detach
            )
        raise typer.Exit(code)
    settings = settings_for(store, bus)
    workflow = load_workflow(file, settings)
    values = gather_inputs(workflow, inputs or [], inputs_json, inputs_file)
    code = run_async(_run(workflow, values, settings, json_output, detach))
    raise typer.Exit(code)


def registered_name(target: Path, client: Client) -> str:
    """The registered workflow a remote command names; a local file cannot be sent as such."""
    if target.is_file():
        raise UsageProblem(
            f"{target} is a local file, but commands act through the server at {client.where}:"
            f" register it there and use its name, or unset {URL_VAR} to run it here"
        )
    return str(target)


def _run_remote(
    client: Client, name: str, pairs: list[str], inputs_json: str | None,
    inputs_file: Path | None, json_output: bool, detach: bool,
) -> int:
    values = remote_inputs(client, name, pairs, inputs_json, inputs_file)
    run_id: str = client.post("/v1/runs", {"workflow_name": name, "inputs": values})["run_id"]
    if detach:
        return _detached(run_id, json_output, f"the server at {client.where} runs it")
    note(f"run {run_id} queued: {name} on {client.where}; waiting for it to end")
    try:
        summary = RunSummary.model_validate(client.wait_final(run_id))
    except KeyboardInterrupt:
        note(f"interrupted: run {run_id} goes on on the server; `podium cancel {run_id}` stops it")
        return EXIT_FAILED
    show_summary(summary, None, json_output)
    return exit_code([summary])


def load_workflow(file: Path, settings: Settings) -> Workflow:
    """Loads and checks a workflow file or `module:workflow`, pricing its models from the
    settings; python steps may live beside a file, as Airflow's dags folder allows."""
    return load_target(file, settings)


def gather_inputs(
    workflow: Workflow, pairs: list[str], inputs_json: str | None, inputs_file: Path | None
) -> dict[str, Any]:
    """File, then --inputs-json, then -i pairs (the most specific wins), checked at once."""
    given = file_and_json_inputs(inputs_json, inputs_file)
    given.update(parse_cli_inputs(workflow, pairs))
    return resolve_inputs(workflow, given)


async def _run(
    workflow: Workflow, inputs: dict[str, Any], settings: Settings, json_output: bool,
    detach: bool = False,
) -> int:
    plan = build_plan(workflow)
    if detach:
        return await _submit_detached(workflow, inputs, settings, json_output)
    async with (
        open_engine(settings) as engine,
        Follower(engine.bus, pick_display(json_output)) as follower,
    ):
        run_id = new_id()  # chosen here, so the view exists before the first event
        follower.track(RunView.of(run_id, workflow.name, plan))
        # Under an active span (TRACEPARENT), the run's trace hangs under it.
        await engine.submit(workflow, inputs, run_id=run_id, trace_parent=current_traceparent())
        note(f"run {run_id} queued")
        async with watch_workers(engine, run_id):
            await _wait_or_cancel(engine, run_id)
        await follower.settle(engine.store)
        summary = await engine.summary(run_id)
    show_summary(summary, plan, json_output)
    return exit_code([summary])


async def _submit_detached(
    workflow: Workflow, inputs: dict[str, Any], settings: Settings, json_output: bool
) -> int:
    """Submits for the workers and returns at once: only a shared bus has someone to run it."""
    async with open_engine(settings) as engine:
        if not engine.bus.distributed:
            raise UsageProblem(
                f"--detach needs workers to run the run: with the bus {settings.bus} it would"
                " live only in this process; set PODIUM_BUS (or --bus) to a redis:// URL that"
                " `podium worker` shares, or PODIUM_URL to a server"
            )
        run_id = await engine.submit(workflow, inputs)
    return _detached(run_id, json_output, "a `podium worker` on this store and bus runs it")


def _detached(run_id: str, json_output: bool, who: str) -> int:
    """The id on stdout (for `RUN=$(podium run --detach ...)`), the how on stderr."""
    if json_output:
        print_json({"run_id": run_id, "status": "queued"})
    else:
        out.print(run_id, markup=False, highlight=False)
    note(f"run {run_id} queued; {who}: `podium status {run_id}` follows it")
    return EXIT_OK


async def _wait_or_cancel(engine: Engine, run_id: str) -> None:
    """Waits for the run; Ctrl-C cancels it gracefully (compensation runs) and waits for that."""
    try:
        await engine.wait_done(run_id)
    except asyncio.CancelledError:
        if not _interrupted():
            raise
        note("interrupted: cancelling the run (compensations run first; Ctrl-C again to quit now)")
        await engine.cancel(run_id, local_actor())
        await engine.wait_done(run_id)


def _interrupted() -> bool:
    """Takes back the cancellation asyncio.Runner made of the main task on Ctrl-C."""
    task = asyncio.current_task()
    if task is None or task.cancelling() == 0:
        return False
    task.uncancel()
    return True


async def follow_runs(
    engine: Engine, follower: Follower, run_ids: Sequence[str]
) -> tuple[list[RunSummary], dict[str, Plan]] | None:
    """Shows and waits for runs this engine resumed; None if Ctrl-C left them for later."""
    plans: dict[str, Plan] = {}
    for run_id in run_ids:
        row = await require_run(engine.store, run_id)
        _, plans[run_id] = await stored_plan(engine.store, row)
        view = RunView.of(run_id, row.workflow, plans[run_id])
        view.seed(row, await engine.store.get_steps(run_id))
        follower.track(view)
    try:
        await asyncio.gather(*(engine.wait_done(r) for r in run_ids))
    except asyncio.CancelledError:
        if not _interrupted():
            raise
        note("interrupted: the runs stay unfinished; `podium recover` resumes them")
        return None
    await follower.settle(engine.store)
    return [await engine.summary(r) for r in run_ids], plans


def show_summary(summary: RunSummary, plan: Plan | None, json_output: bool) -> None:
    if json_output:
        print_json(summary.model_dump(mode="json"))
    else:
        out.print(summary_panel(summary, plan))


def exit_code(summaries: Sequence[RunSummary]) -> int:
    return EXIT_OK if all(s.status in SUCCESSFUL for s in summaries) else EXIT_FAILED


# -- recover ----------------------------------------------------------------------------------


@guarded
def recover_command(
    runs: Annotated[
        list[str] | None, typer.Argument(help="Runs to resume (default: every unfinished run)")
    ] = None,
    json_output: JsonOption = False,
    store: StoreOption = None,
    bus: BusOption = None,
) -> None:
    """Resume unfinished runs (after a crash) in this process and wait for them."""
    raise typer.Exit(run_async(_recover(runs or [], settings_for(store, bus), json_output)))


async def _recover(run_ids: list[str], settings: Settings, json_output: bool) -> int:
    async with (
        open_engine(settings) as engine,
        Follower(engine.bus, pick_display(json_output)) as follower,
    ):
        for run_id in run_ids:
            await require_run(engine.store, run_id)  # an unknown id is an error, not "nothing"
        resumed = await engine.recover(run_ids or None)
        refused = await _not_recovered(engine.store, sorted(set(run_ids) - set(resumed)))
        if not resumed:
            if not run_ids:
                await _say_why_nothing(engine.store)
            if json_output:
                print_json([])
            return EXIT_FAILED if refused else EXIT_OK
        result = await follow_runs(engine, follower, resumed)
    if result is None:
        return EXIT_FAILED
    summaries, _ = result
    if json_output:
        print_json([s.model_dump(mode="json") for s in summaries])
    else:
        out.print(summaries_table(summaries))
    return EXIT_FAILED if refused else exit_code(summaries)


async def _not_recovered(store: Store, run_ids: list[str]) -> bool:
    """Says why each named run was not resumed (ended, or held by whom until when)."""
    for run_id in run_ids:
        row = await require_run(store, run_id)
        if row.done:
            note(f"run {run_id} not recovered: it already ended ({row.status})")
            continue
        holders = await store.lease_holders([run_id])
        if holders:
            held = holders[0]
            note(
                f"run {run_id} not recovered: held by the live process {held.owner}"
                f" (host:pid:engine) until {utc_iso(held.until)}; try again after that"
            )
        else:
            note(f"run {run_id} not recovered: another process took it over just now")
    return bool(run_ids)


async def _say_why_nothing(store: Store) -> None:
    """Tells "no unfinished runs" apart from "every unfinished run is held by a live process"."""
    holders = await store.lease_holders()
    if not holders:
        note("nothing to recover: no unfinished runs")
        return
    count = sum(h.runs for h in holders)
    until = utc_iso(max(h.until for h in holders))
    owners = ", ".join(sorted(h.owner for h in holders))
    note(
        f"nothing to recover now: {count} unfinished run{'s' if count != 1 else ''} held by"
        f" live processes ({owners}) until {until} at the latest"
    )


# -- plan, validate -----------------------------------------------------------------------------


@guarded
def plan_command(file: FileArgument, json_output: JsonOption = False) -> None:
    """Show the execution plan: order, parallel groups, critical path, estimate, peak resources."""
    workflow = load_workflow(file, settings_for(None, None))
    plan = build_plan(workflow)
    if json_output:
        print_json(plan.to_json())
    else:
        out.print(render_plan(plan, workflow))


@guarded
def validate_command(file: FileArgument) -> None:
    """Check a workflow file: exit 0, or 2 with every problem, one line each."""
    workflow = load_workflow(file, settings_for(None, None))
    count = len(workflow.steps)
    out.print(f"{file}: valid ({count} step{'s' if count != 1 else ''})", markup=False)
    for warning in workflow_warnings(workflow.to_json()):
        err.print(warning.line(str(file)).replace("error: ", "warning: ", 1), markup=False)
