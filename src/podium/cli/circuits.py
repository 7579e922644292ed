"""`podium circuits [--json]`, `podium circuits open KEY`, `podium circuits close KEY`.

Reads and forces the circuit breakers in the store (or through the API), for every engine.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.table import Table

from podium.cli.client import Client, RemoteError, client_for
from podium.cli.common import (
    JsonOption,
    ServerOption,
    StoreOption,
    UsageProblem,
    guarded,
    local_actor,
    note,
    opened_store,
    out,
    print_json,
    run_async,
    settings_for,
)
from podium.clock import SYSTEM_CLOCK
from podium.control.circuits import force_circuit
from podium.events import audit_event
from podium.settings import Settings
from podium.store.documents import circuit_json
from podium.store.records import CircuitRecord, CircuitResult

circuits_app = typer.Typer(
    help="Circuit breakers: list them, or force one open or closed.",
    invoke_without_command=True, pretty_exceptions_enable=False,
)
KeyArgument = Annotated[
    str, typer.Argument(help="The circuit: an agent's name, or `kind:target` as listed")
]


@circuits_app.callback()
@guarded
def circuits_command(
    ctx: typer.Context, json_output: JsonOption = False, store: StoreOption = None,
    server: ServerOption = None,
) -> None:
    """List the circuit breakers every engine shares (without a sub-command)."""
    if ctx.invoked_subcommand is None:
        _list(store, server, json_output)


@circuits_app.command("list")
@guarded
def list_command(
    json_output: JsonOption = False, store: StoreOption = None, server: ServerOption = None
) -> None:
    """List the circuit breakers: state, failures, when an open one may half-open."""
    _list(store, server, json_output)


@circuits_app.command("open")
@guarded
def open_command(key: KeyArgument, json_output: JsonOption = False,
                 store: StoreOption = None, server: ServerOption = None) -> None:
    """Hold a circuit open (calls go to their fallback) until `podium circuits close KEY`."""
    _force(store, server, key, open_=True, json_output=json_output)


@circuits_app.command("close")
@guarded
def close_command(key: KeyArgument, json_output: JsonOption = False,
                  store: StoreOption = None, server: ServerOption = None) -> None:
    """Close a circuit and reset its counts (also lifts an operator's `open`)."""
    _force(store, server, key, open_=False, json_output=json_output)


def _list(store: str | None, server: str | None, json_output: bool) -> None:
    client = client_for(server)
    if client is not None:
        with client:
            rows: list[dict[str, Any]] = client.get("/v1/circuits")["circuits"]
    else:
        now = SYSTEM_CLOCK.now()
        rows = [circuit_json(c, now) for c in run_async(_read(settings_for(store, None)))]
    if json_output:
        print_json({"circuits": rows})
        return
    if not rows:
        note("no circuit has recorded a failure yet (every circuit is closed)")
        return
    table = Table(title="circuits")
    for column in ("circuit", "state", "failures", "opened at", "half-opens", "forced"):
        table.add_column(column)
    for row in rows:
        wait = row["half_open_in_s"]
        table.add_row(
            str(row["key"]), str(row["state"]), str(row["failures"]),
            row["opened_at"] or "-", _when(wait),
            "yes" if row["forced"] else "",
        )
    out.print(table)


def _when(wait_s: float | None) -> str:
    if wait_s is None:
        return "-"
    return f"in {wait_s:.1f}s" if wait_s > 0 else "at the next call"


async def _read(settings: Settings) -> list[CircuitRecord]:
    async with opened_store(settings) as store:
        return await store.list_circuits()


def _force(
    store: str | None, server: str | None, key: str, *, open_: bool, json_output: bool
) -> None:
    key = key.strip()
    if not key:
        raise UsageProblem("the circuit key is empty; `podium circuits` lists the keys")
    client = client_for(server)
    if client is not None:
        with client:
            document = _remote_force(client, key, open_=open_)
    else:
        result = run_async(_write(settings_for(store, None), key, open_=open_))
        record = result.circuit
        document = {"circuit": circuit_json(record, SYSTEM_CLOCK.now()) if record else None,
                    "changed": result.transition is not None}
    if json_output:
        print_json(document)
    if document["circuit"] is None:
        note(f"circuit {key} has no recorded state (it is closed); nothing changed")
    elif open_:
        held = "" if document["changed"] else " (it already was)"
        note(f"circuit {key} held open{held}; engines apply it within their poll interval")
    else:
        note(f"circuit {key} closed and reset; engines apply it within their poll interval")


def _remote_force(client: Client, key: str, *, open_: bool) -> dict[str, Any]:
    path = f"/v1/circuits/{quote(key, safe=':')}/{'open' if open_ else 'close'}"
    try:
        document: dict[str, Any] = client.post(path)
    except RemoteError as exc:
        if exc.status != 404:
            raise
        return {"circuit": None, "changed": False}  # as the store says of an unknown circuit
    return document


async def _write(settings: Settings, key: str, *, open_: bool) -> CircuitResult:
    """Forces the circuit, and logs the transition as a system event (no run)."""
    async with opened_store(settings) as store:
        verb = "circuit.open" if open_ else "circuit.close"
        audit = audit_event(local_actor(), verb, key)
        return await force_circuit(store, key, open_=open_, source="podium.cli", audit=audit)
