"""Small operator-facing fixes, as a user meets them: `pause list`, whole ids in `schedule
list`, what `db upgrade` applied, the relative `sqlite:///` note, lost workers forgotten, the
compensations in the order they ran, and `runs --json` with the API listing's fields."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path

import pytest
from cli_support import CLI, Podium, check_output, cli_env

from podium.api.runs import run_row
from podium.cli.runs import _as_run_json
from podium.store import open_store
from podium.store.documents import run_json
from podium.store.records import FORGOTTEN_AFTER_S, RunState, WorkerInfo

QUICK = "name: quick\nsteps:\n  a: {kind: sim}\n"
SAGA = """
name: saga
steps:
  first: {kind: sim, latency: 5ms, compensate: {kind: sim}}
  second: {kind: sim, latency: 5ms, needs: [first], compensate: {kind: sim}}
  third: {kind: sim, latency: 5ms, needs: [second], compensate: {kind: sim}}
  boom: {kind: sim, needs: [third], fail_rate: 1.0, retry: {attempts: 1}}
"""


@pytest.fixture
def podium(tmp_path: Path) -> Podium:
    return Podium(tmp_path / "p.db", tmp_path)


def test_pause_list_shows_what_is_paused_and_says_when_nothing_is(podium: Podium) -> None:
    empty = podium("pause", "list")
    assert empty.code == 0 and "nothing is paused" in empty.stderr
    assert podium("pause", "agent", "writer").code == 0
    assert podium("pause", "workflow", "nightly").code == 0
    listed = podium("pause", "list")
    assert listed.stdout.splitlines() == ["agent writer", "workflow nightly"]
    assert podium("pause", "list", "--json").json() == {
        "pauses": [{"scope": "agent", "name": "writer"}, {"scope": "workflow", "name": "nightly"}]
    }
    missing = podium("pause", "agent")
    assert missing.code == 2 and "needs the agent's name" in missing.stderr


def test_schedule_list_shows_whole_ids_on_an_80_column_terminal(podium: Podium) -> None:
    path = podium.write("quick.yaml", QUICK)
    added = podium("schedule", "add", str(path), "--every", "1h", "--json")
    schedule_id = added.json()["schedule_id"]
    env = {**cli_env(), "COLUMNS": "80"}
    proc = subprocess.run(
        [*CLI, "schedule", "list", "--store", podium.store], capture_output=True, text=True,
        env=env, cwd=podium.workdir, timeout=60, stdin=subprocess.DEVNULL,
    )
    check_output(proc.stdout, proc.stderr)
    assert schedule_id in proc.stdout


def test_db_upgrade_on_a_fresh_store_says_which_migrations_it_applied(podium: Podium) -> None:
    fresh = podium("db", "upgrade")
    assert fresh.code == 0
    assert "new store: applied migrations 1 to " in fresh.stderr
    assert fresh.stderr.startswith(f"{podium.store}: ")  # the URL as given, slashes kept
    again = podium("db", "upgrade")
    assert "schema up to date" in again.stderr and "no migration applied" in again.stderr


def test_a_relative_sqlite_url_that_looks_absolute_is_named_with_its_resolved_path(
    podium: Podium,
) -> None:
    result = podium("runs", "--store", "sqlite:///tmp/newcomer-x.db", store=False)
    assert result.code == 0
    resolved = podium.workdir / "tmp" / "newcomer-x.db"
    assert f"is the relative path tmp/newcomer-x.db ({resolved})" in result.stderr
    assert "sqlite:////tmp/newcomer-x.db (four slashes)" in result.stderr
    assert resolved.exists()
    quiet = podium("runs")  # an absolute path (four slashes) says nothing
    assert "relative path" not in quiet.stderr


def test_workers_lists_lost_ones_for_a_while_then_forgets_them(podium: Podium) -> None:
    now = time.time()

    async def beat() -> None:
        async with open_store(podium.store) as store:
            gone = now - FORGOTTEN_AFTER_S - 5
            for name, at in (("live", now), ("lost", now - 60), ("gone", gone)):
                await store.heartbeat(WorkerInfo(name, "h", os.getpid(), 4, 0, "running", at, at))

    asyncio.run(beat())
    listed = {w["worker_id"]: w["state"] for w in podium("workers", "--json").json()}
    assert listed == {"live": "running", "lost": "lost"}


def test_the_summary_lists_compensations_in_the_order_they_ran(podium: Podium) -> None:
    result = podium("run", str(podium.write("saga.yaml", SAGA)))
    assert result.code == 1
    [line] = [line for line in result.stdout.splitlines() if "compensations" in line]
    assert line.split("compensations", 1)[1].strip(" │") == "third, second, first"


def test_runs_json_has_every_field_of_the_api_listing_locally_and_remotely() -> None:
    row = RunState(
        run_id="r1", workflow="w", workflow_version="2", definition_digest="d", inputs={},
        priority="high", status="succeeded", created_at=100.0, started_at=101.0,
        finished_at=103.5, parent_run_id="p1",
    )
    local, api = run_json(row), run_row(row)
    assert {k: local[k] for k in api} == api
    assert local["duration_s"] == 2.5
    assert _as_run_json(api) == local
