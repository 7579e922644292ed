"""The `podium` command line: the typer app and its console-script entry point.

Each group of commands lives in its own module; this one wires them up and sets up logging.
"""

from __future__ import annotations

import sys
from importlib import metadata
from typing import Annotated

import typer

from podium.cli import audit as audit_cli
from podium.cli import circuits, dlq, gc, pause, queue, resources, run, runs, serve, worker
from podium.cli import keys as keys_cli
from podium.cli import schedule as schedule_cli
from podium.cli import spend as spend_cli
from podium.cli.common import set_verbose

app = typer.Typer(
    name="podium",
    help="podium: a durable orchestration engine for AI-agent and workflow pipelines.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # errors are one sentence on stderr, never a traceback
    add_completion=False,
)

app.command("run")(run.run_command)
app.command("plan")(run.plan_command)
app.command("validate")(run.validate_command)
app.command("recover")(run.recover_command)
app.command("runs")(runs.runs_command)
app.command("status")(runs.status_command)
app.command("cancel")(runs.cancel_command)
app.command("signal")(runs.signal_command)
app.command("events")(runs.events_command)
app.command("serve")(serve.serve_command)
app.command("pause")(pause.pause_command)
app.command("resume")(pause.resume_command)
app.command("worker")(worker.worker_command)
app.command("workers")(worker.workers_command)
app.command("queue")(queue.queue_command)
app.command("resources")(resources.resources_command)
app.command("spend")(spend_cli.spend_command)
app.command("budgets")(spend_cli.budgets_command)
app.command("gc")(gc.gc_command)
app.add_typer(circuits.circuits_app, name="circuits")
app.add_typer(dlq.dlq_app, name="dlq")
app.add_typer(schedule_cli.schedule_app, name="schedule")
app.command("scheduler")(schedule_cli.scheduler_command)
app.add_typer(worker.db_app, name="db")
app.add_typer(audit_cli.audit_app, name="audit")
app.add_typer(keys_cli.keys_app, name="keys")


def _show_version(wanted: bool) -> None:
    if wanted:
        try:
            installed = metadata.version("podium")
        except metadata.PackageNotFoundError:  # run from a source tree that is not installed
            installed = "unknown (not installed)"
        typer.echo(f"podium {installed}")
        raise typer.Exit(0)


@app.callback()
def _options(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log debug details to stderr")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True,
                     help="Print the installed version and exit"),
    ] = False,
) -> None:
    set_verbose(verbose)


def main() -> None:
    # `call: mypkg.tasks:fn` resolves from the current directory, as with uvicorn and celery;
    # a console script's sys.path would otherwise hold only its own bin directory.
    if "" not in sys.path:
        sys.path.insert(0, "")
    app()


if __name__ == "__main__":
    main()
