"""`podium circuits [--json]`, `podium circuits open KEY`, `podium circuits close KEY`.

Reads and forces the circuit breakers in the store, so every engine and worker sees the change.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.table import Table

from podium.bus.events import Event, utc_iso
from podium.cli.common import (
    JsonOption,
    StoreOption,
    UsageProblem,
    guarded,
    note,
    opened_store,
    out,
    print_json,
    run_async,
    settings_for,
)
from podium.control.circuits import half_open_at, transition_payload
from podium.settings import Settings
from podium.store.records import Batch, CircuitRecord, CircuitResult

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
    ctx: typer.Context, json_output: JsonOption = False, store: StoreOption = None
) -> None:
    """List the circuit breakers every engine shares (without a sub-command)."""
    if ctx.invoked_subcommand is None:
        _list(settings_for(store, None), json_output)


@circuits_app.command("list")
@guarded
def list_command(json_output: JsonOption = False, store: StoreOption = None) -> None:
    """List the circuit breakers: state, failures, when an open one may half-open."""
    _list(settings_for(store, None), json_output)


@circuits_app.command("open")
@guarded
def open_command(key: KeyArgument, json_output: JsonOption = False,
                 store: StoreOption = None) -> None:
    """Hold a circuit open (calls go to their fallback) until `podium circuits close KEY`."""
    _force(settings_for(store, None), key, open_=True, json_output=json_output)


@circuits_app.command("close")
@guarded
def close_command(key: KeyArgument, json_output: JsonOption = False,
                  store: StoreOption = None) -> None:
    """Close a circuit and reset its counts (also lifts an operator's `open`)."""
    _force(settings_for(store, None), key, open_=False, json_output=json_output)


def circuit_json(record: CircuitRecord, now: float) -> dict[str, Any]:
    at = half_open_at(record, record.cooldown_s)
    return {
        "key": record.key,
        "state": record.state,
        "failures": record.failures,
        "successes": record.successes,
        "trials": record.trials,
        "opened_at": utc_iso(record.opened_at) if record.opened_at is not None else None,
        "half_open_at": utc_iso(at) if at is not None else None,
        "half_open_in_s": round(max(0.0, at - now), 3) if at is not None else None,
        "cooldown_s": record.cooldown_s,
        "forced": record.forced,
        "updated_at": utc_iso(record.updated_at),
    }


def _list(settings: Settings, json_output: bool) -> None:
    circuits = run_async(_read(settings))
    now = time.time()
    rows = [circuit_json(c, now) for c in circuits]
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


def _force(settings: Settings, key: str, *, open_: bool, json_output: bool) -> None:
    key = key.strip()
    if not key:
        raise UsageProblem("the circuit key is empty; `podium circuits` lists the keys")
    result = run_async(_write(settings, key, open_=open_))
    if json_output:
        record = result.circuit
        print_json({"circuit": circuit_json(record, time.time()) if record else None,
                    "changed": result.transition is not None})
    if result.circuit is None:
        note(f"circuit {key} has no recorded state (it is closed); nothing changed")
    elif open_:
        held = "" if result.transition else " (it already was)"
        note(f"circuit {key} held open{held}; engines apply it within their poll interval")
    else:
        note(f"circuit {key} closed and reset; engines apply it within their poll interval")


async def _write(settings: Settings, key: str, *, open_: bool) -> CircuitResult:
    """Forces the circuit, and logs the transition as a system event (no run)."""
    async with opened_store(settings) as store:
        result = await store.force_circuit(key, open_=open_)
        if result.circuit is not None and result.transition is not None:
            verb = "open" if open_ else "close"
            reason = f"forced by an operator (podium circuits {verb})"
            payload = transition_payload(result.circuit, result.circuit.cooldown_s, reason)
            event = Event(
                event_type=f"system.circuit.{result.transition}", correlation_id="",
                payload=payload, source="podium.cli",
            )
            await store.write(Batch(events=[event]))
        return result
