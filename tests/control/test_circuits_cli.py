"""`podium circuits [--json]`, `circuits open KEY`, `circuits close KEY`, on both stores; and
bad circuit policies rejected with the field named (workflow validation and podium.toml)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import circuitlib
import pytest
from circuitlib import run_settled, settings, workflow
from typer.testing import CliRunner

from podium.bus import open_bus
from podium.cli.app import app
from podium.engine.engine import Engine
from podium.store import open_store

KEY = "python:circuitlib:body"


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    circuitlib.reset()
    yield
    circuitlib.reset()


def _cli(*args: str, env: dict[str, str] | None = None) -> Any:
    result = CliRunner().invoke(app, list(args), env=env)
    assert "Traceback" not in result.output
    return result


async def _run_once(store_url: str) -> Any:
    async with (
        open_store(store_url) as store,
        open_bus("memory://") as bus,
        Engine(store, bus, settings()) as engine,
    ):
        return await run_settled(engine, workflow({"failures": 3, "cooldown": "1m"}))


async def _events(
    store_url: str, run_id: str | None = None
) -> list[tuple[str, str, dict[str, Any]]]:
    async with open_store(store_url) as store:
        return [
            (e.event_type, e.correlation_id, e.payload)
            for _, e in await store.list_events(run_id, limit=1000)
        ]


async def _circuit_events(store_url: str) -> list[tuple[str, str, dict[str, Any]]]:
    return [e for e in await _events(store_url) if e[0].startswith("system.circuit.")]


def test_an_operator_forces_a_circuit_open_and_closed(store_url: str) -> None:
    assert _cli("circuits", "--json", "--store", store_url).stdout == '{\n  "circuits": []\n}\n'
    opened = _cli("circuits", "open", KEY, "--store", store_url)
    assert opened.exit_code == 0, opened.output
    assert f"circuit {KEY} held open" in opened.stderr

    listing = _cli("circuits", "--json", "--store", store_url)
    assert listing.exit_code == 0, listing.output
    [row] = json.loads(listing.stdout)["circuits"]
    assert (row["key"], row["state"], row["forced"], row["half_open_at"]) == (
        KEY, "open", True, None,
    )
    assert row["opened_at"].endswith("Z")

    held = asyncio.run(_run_once(store_url))
    assert held.steps["s"].fallback_used and circuitlib.CALLS == {}
    assert held.status == "degraded"
    [why] = [p["error"] for t, _, p in asyncio.run(_events(store_url, held.run_id))
             if t == "agent.task.fallback"]
    assert why == (
        f"circuit {KEY} is open: held open by an operator until `podium circuits close {KEY}`;"
        " the call was not made"
    )

    closed = _cli("circuits", "close", KEY, "--json", "--store", store_url)
    assert closed.exit_code == 0, closed.output
    document = json.loads(closed.stdout)
    assert document["changed"] and document["circuit"]["state"] == "closed"
    assert not document["circuit"]["forced"]
    assert not asyncio.run(_run_once(store_url)).steps["s"].fallback_used
    assert circuitlib.CALLS == {"api": 1}

    events = asyncio.run(_circuit_events(store_url))
    assert [(t, run) for t, run, _ in events] == [
        ("system.circuit.opened", ""), ("system.circuit.closed", ""),
    ]
    assert events[0][2]["reason"] == "forced by an operator (podium circuits open)"


def test_the_listing_shows_failures_and_when_an_open_circuit_may_half_open(
    store_url: str,
) -> None:
    circuitlib.FAILING.add("api")
    for _ in range(3):
        asyncio.run(_run_once(store_url))
    [row] = json.loads(_cli("circuits", "list", "--json", "--store", store_url).stdout)[
        "circuits"
    ]
    assert (row["state"], row["failures"], row["forced"], row["cooldown_s"]) == (
        "open", 3, False, 60.0,
    )
    assert 55 < row["half_open_in_s"] <= 60 and row["half_open_at"].endswith("Z")
    table = _cli("circuits", "--store", store_url)
    assert table.exit_code == 0 and KEY in table.stdout and "open" in table.stdout
    [event] = asyncio.run(_circuit_events(store_url))
    assert event[0] == "system.circuit.opened" and event[1]  # in the run that opened it


def test_closing_an_unknown_circuit_changes_nothing_and_an_empty_key_is_a_usage_error(
    tmp_path: Path,
) -> None:
    store = f"sqlite:///{tmp_path / 'p.db'}"
    unknown = _cli("circuits", "close", "no-such-agent", "--store", store)
    assert unknown.exit_code == 0
    assert "no-such-agent has no recorded state (it is closed); nothing changed" in unknown.stderr
    for command in ("open", "close"):
        empty = _cli("circuits", command, "  ", "--store", store)
        assert empty.exit_code == 2
        assert empty.stderr.strip() == (
            "error: the circuit key is empty; `podium circuits` lists the keys"
        )
    assert json.loads(_cli("circuits", "--json", "--store", store).stdout) == {"circuits": []}


@pytest.mark.parametrize(
    ("circuit", "field", "problem"),
    [
        ("{failures: 0}", "steps.s.circuit.failures", "greater than or equal to 1"),
        ("{cooldown: -1s}", "steps.s.circuit.cooldown", "not a duration"),
        ("{half_open_max: 0}", "steps.s.circuit.half_open_max", "greater than or equal to 1"),
    ],
)
def test_a_bad_circuit_in_a_workflow_is_a_validation_error_naming_the_field(
    tmp_path: Path, circuit: str, field: str, problem: str
) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(f"name: bad\nsteps:\n  s:\n    kind: sim\n    circuit: {circuit}\n")
    result = _cli("validate", str(path))
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {path}: {field}:") and problem in line


@pytest.mark.parametrize(
    ("toml", "field", "problem"),
    [
        ("[circuits]\ndefault = {failures = 0}\n", "circuits.default.failures",
         "greater than or equal to 1"),
        ("[agents.writer]\ncircuit = {cooldown = \"-1s\"}\n", "agents.writer.circuit.cooldown",
         "not a duration"),
    ],
)
def test_a_bad_circuit_in_podium_toml_is_an_error_naming_the_key(
    tmp_path: Path, toml: str, field: str, problem: str
) -> None:
    config = tmp_path / "podium.toml"
    config.write_text(toml)
    result = _cli("circuits", "--store", f"sqlite:///{tmp_path / 'p.db'}",
                  env={"PODIUM_CONFIG": str(config)})
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {config}: {field}:"), line
    assert problem in line, line
    assert "Traceback" not in result.output
