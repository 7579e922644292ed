"""What every command shares: the consoles, the --store/--bus/--json options, settings, the engine.

`guarded` turns errors into one clear line on stderr and an exit code: never a traceback.
"""

from __future__ import annotations

import asyncio
import functools
import getpass
import json
import os
import socket
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console

from podium import loop
from podium.bus import open_bus
from podium.control.secrets import load_secrets
from podium.errors import PodiumError, RunNotFound, WorkflowInvalid
from podium.events import Actor
from podium.model.inputs import load_inputs_file
from podium.model.workflow import Workflow
from podium.plan import Plan, build_plan
from podium.redact import Redactor
from podium.settings import Settings
from podium.store import RunState, Store, open_store

if TYPE_CHECKING:
    from podium.engine.engine import Engine

P = ParamSpec("P")
T = TypeVar("T")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
SUCCESSFUL = frozenset({"succeeded", "degraded"})  # run statuses that exit 0

PIPE_WIDTH = 160  # rich assumes 80 columns off a terminal: too narrow for run ids and errors


def _console(stderr: bool) -> Console:
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPE_WIDTH
    return console


out = _console(stderr=False)
err = _console(stderr=True)
_verbose = [False]
# Every secret value this process knows, masked in what it prints and logs.
REDACTOR = Redactor()  # set by the global --verbose option, read when logging is configured

StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store", metavar="URL",
        help="Store URL (default: $PODIUM_STORE, else sqlite:///.podium/podium.db)",
    ),
]
BusOption = Annotated[
    str | None,
    typer.Option("--bus", metavar="URL", help="Bus URL (default: $PODIUM_BUS, else memory://)"),
]
DrainOption = Annotated[
    float, typer.Option("--drain", help="Seconds to let in-flight runs finish on SIGTERM")
]
InputsOption = Annotated[
    list[str] | None,
    typer.Option("-i", "--input", metavar="NAME=VALUE",
                 help="An input, parsed by its declared type (repeatable)"),
]
InputsJsonOption = Annotated[
    str | None, typer.Option("--inputs-json", metavar="JSON", help="Inputs as a JSON object"),
]
InputsFileOption = Annotated[
    Path | None,
    typer.Option("--inputs-file", metavar="FILE", help="Inputs from a JSON or YAML file"),
]
DetachOption = Annotated[
    bool,
    typer.Option("--detach", help="Submit the run, print its id and exit; workers run it"),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout instead of tables")
]
ServerOption = Annotated[
    str | None,
    typer.Option(
        "--server", metavar="URL",
        help="Act through this podium API instead of the store (default: $PODIUM_URL);"
        " the key comes from $PODIUM_API_KEY",
    ),
]


class UsageProblem(Exception):
    """A bad argument the CLI checks itself (bad JSON, unknown status): exit 2."""


def guarded(func: Callable[P, None]) -> Callable[P, None]:
    """Wraps a command so errors become `error: ...` lines on stderr and the right exit code."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            func(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise  # typer's own exits and usage errors keep their codes
        except WorkflowInvalid as exc:
            # The problems already read `error: FILE: where: what`.
            fail_lines(exc.problems, EXIT_USAGE)
        except UsageProblem as exc:
            fail_lines(error_lines(exc), EXIT_USAGE)
        except PodiumError as exc:
            fail_lines(error_lines(exc), EXIT_FAILED)
        except KeyboardInterrupt:
            fail_lines(["error: interrupted"], EXIT_FAILED)
        except Exception as exc:
            _log_internal_error()
            fail_lines([f"error: internal error: {type(exc).__name__}: {exc}"], EXIT_FAILED)

    return wrapper


def _log_internal_error() -> None:
    """The traceback of an unexpected error goes to the debug log (`podium -v`), not the user."""
    import structlog

    configure_logging()
    structlog.get_logger("podium.cli").debug("internal error", exc_info=True)


def error_lines(exc: Exception) -> list[str]:
    """`error: ...` for each line of the message (a file's problems come one per line)."""
    return [f"error: {line}" for line in str(exc).splitlines() or [""]]


def fail_lines(lines: list[str], code: int) -> None:
    for line in lines:
        typer.echo(REDACTOR.text(line), err=True)
    raise typer.Exit(code)


def note(message: str) -> None:
    """A line for the human on stderr, kept apart from the result on stdout.

    Printed through the rich console so a live view running meanwhile stays intact.
    """
    err.print(message, markup=False, highlight=False, soft_wrap=True)


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """Runs a command body on podium's loop; Ctrl-C cancels the body (asyncio.Runner)."""
    return loop.run(main)


def settings_for(store: str | None, bus: str | None) -> Settings:
    """The settings (PODIUM_* variables, config and pricing files), with --store/--bus given on
    the command line winning."""
    overrides: dict[str, Any] = {n: v for n, v in (("store", store), ("bus", bus)) if v}
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        wrong = "; ".join(
            f"PODIUM_{'_'.join(map(str, e['loc'])).upper()} {e['msg'].lower()}"
            for e in exc.errors()
        )
        raise UsageProblem(f"bad settings in the environment: {wrong}") from None
    except PodiumError as exc:  # a config or pricing file that cannot be read or is invalid
        raise UsageProblem(str(exc)) from None


@asynccontextmanager
async def open_engine(settings: Settings) -> AsyncIterator[Engine]:
    """Store, bus and engine for one command; the engine gets the secrets `[secrets]` allows,
    and this process masks their values in everything it prints or logs."""
    # Imported here: commands that only read the store skip the engine and its step kinds.
    from podium.engine.engine import Engine

    try:
        secrets = load_secrets(settings.control.secrets, os.environ)
    except PodiumError as exc:
        raise UsageProblem(str(exc)) from None
    for value in secrets.values():
        REDACTOR.add(value)
    configure_logging()
    note_relative_sqlite(settings.store)
    async with (
        open_store(settings.store, durability=settings.durability) as store,
        open_bus(settings.bus) as bus,
        Engine(store, bus, settings, secrets=secrets) as engine,
    ):
        with traced(engine):
            yield engine


@asynccontextmanager
async def opened_store(settings: Settings) -> AsyncIterator[Store]:
    """The store alone, for commands that only read it."""
    note_relative_sqlite(settings.store)
    async with open_store(settings.store, durability=settings.durability) as store:
        yield store


def note_relative_sqlite(url: str) -> None:
    """`sqlite:///tmp/x.db` is the relative path `tmp/x.db` (three slashes: relative, four:
    absolute, as SQLAlchemy reads them); said when it looks meant as `/tmp/x.db`."""
    if not url.startswith("sqlite:///"):
        return
    path = Path(url.removeprefix("sqlite:///"))
    if path.is_absolute() or not path.parts or not Path("/", path.parts[0]).is_dir():
        return
    note(
        f"note: {url} is the relative path {path} ({Path.cwd() / path}); for /{path} write"
        f" sqlite:////{path} (four slashes)"
    )


async def stored_plan(store: Store, row: RunState) -> tuple[Workflow, Plan]:
    """The definition a run was started with (kept by digest) and its plan."""
    workflow = Workflow.model_validate(await store.get_definition(row.definition_digest))
    return workflow, build_plan(workflow)


async def require_run(store: Store, run_id: str) -> RunState:
    row = await store.get_run(run_id)
    if row is None:
        raise RunNotFound(run_id)
    return row


def print_json(document: Any) -> None:
    """Exactly one JSON document on stdout (`--json`)."""
    sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def parse_json_arg(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageProblem(
            f"{what} is not valid JSON: {exc.msg} at column {exc.colno} (got {text!r});"
            " quote it for the shell, e.g. '{\"approved\": true}'"
        ) from None


def file_and_json_inputs(inputs_json: str | None, inputs_file: Path | None) -> dict[str, Any]:
    """Inputs from --inputs-file, then --inputs-json over them (the -i pairs come last)."""
    given: dict[str, Any] = {}
    if inputs_file is not None:
        given.update(load_inputs_file(inputs_file))
    if inputs_json is not None:
        data = parse_json_arg(inputs_json, "--inputs-json")
        if not isinstance(data, dict):
            raise UsageProblem(
                f"--inputs-json must be a JSON object of input names to values"
                f" (got a {type(data).__name__})"
            )
        given.update(data)
    return given


def set_verbose(verbose: bool) -> None:
    _verbose[0] = verbose


def configure_logging() -> None:
    """Logs go to stderr, as text or JSON lines (`PODIUM_LOG_FORMAT`); warnings only unless
    --verbose; every secret this process knows masked."""
    from podium.observe.logs import configure_logging as configure
    from podium.observe.logs import log_format

    try:
        fmt = log_format()
    except PodiumError as exc:
        raise UsageProblem(str(exc)) from None
    configure(REDACTOR, verbose=_verbose[0], fmt=fmt)


@contextmanager
def traced(engine: Engine) -> Iterator[None]:
    """Traces the engine's runs while the `OTEL_*` variables ask for it (nothing otherwise:
    no observer, no cost); what is left is exported on the way out."""
    from podium.observe.tracing import Tracing

    try:
        tracing = Tracing.from_env()
    except PodiumError as exc:
        raise UsageProblem(str(exc)) from None
    if tracing is None:
        yield
        return
    tracing.install(engine)
    try:
        yield
    finally:
        tracing.shutdown()


def local_actor() -> Actor:
    """Who a local command acts as in events and the audit log: `cli:<user>@<host>`. Access
    to the store is what authorises it, so there is no role."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's arbitrary uid)
        user = str(os.getuid())
    return Actor(f"cli:{user}@{socket.gethostname()}")


async def drain_engine(engine: Engine, drain_s: float, hurry: asyncio.Event) -> None:
    """Lets in-flight runs finish for up to `drain_s` (or until `hurry` is set); the rest stay
    in the store, and the engine's shutdown releases their leases so the next start resumes
    them at once."""
    active = engine.active_runs()
    if not active:
        return
    note(f"draining: up to {drain_s:g}s for {len(active)} run(s) in flight")
    waits = [asyncio.ensure_future(engine.wait_done(run_id)) for run_id in active]
    finished: asyncio.Future[Any] = asyncio.gather(*waits, return_exceptions=True)
    hurried: asyncio.Future[Any] = asyncio.ensure_future(hurry.wait())
    await asyncio.wait({finished, hurried}, timeout=drain_s, return_when=asyncio.FIRST_COMPLETED)
    for task in [*waits, hurried]:
        task.cancel()
    await asyncio.gather(finished, hurried, return_exceptions=True)

