"""`podium schedule add/list/remove` and `podium scheduler` as a user runs them, in subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from podium.store import open_store

CLI = [sys.executable, "-m", "podium.cli.app"]
WORKFLOW = """
name: greet
inputs:
  who: {type: string, required: true}
  times: {type: integer, default: 1}
steps:
  hello: {kind: sim, latency: 5ms, output: {text: "hi {{ inputs.who }}"}}
"""


@dataclass(frozen=True)
class Done:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass(frozen=True)
class Podium:
    workdir: Path
    store_url: str | None = None

    @property
    def store(self) -> str:
        return self.store_url or f"sqlite:///{self.workdir / 'podium.db'}"

    def env(self) -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if not k.startswith("PODIUM_")}

    def __call__(self, *args: str) -> Done:
        proc = subprocess.run(
            [*CLI, *args, "--store", self.store], capture_output=True, text=True,
            env=self.env(), cwd=self.workdir, timeout=60, stdin=subprocess.DEVNULL,
        )
        assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
        return Done(proc.returncode, proc.stdout, proc.stderr)

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*CLI, *args, "--store", self.store], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=self.env(), cwd=self.workdir,
            stdin=subprocess.DEVNULL,
        )

    def runs(self, workflow: str = "greet") -> list[tuple[str, str]]:
        """(run id, status) of the workflow's runs, read from the store directly."""

        async def read() -> list[tuple[str, str]]:
            async with open_store(self.store) as store:
                rows = await store.list_runs(workflow=workflow, limit=1000)
            return [(r.run_id, r.status) for r in rows]

        return asyncio.run(read())

    def wait_for_runs(self, count: int, timeout_s: float = 30.0) -> list[tuple[str, str]]:
        deadline = time.monotonic() + timeout_s
        while True:
            runs = self.runs()
            if sum(status == "succeeded" for _, status in runs) >= count:
                return runs
            assert time.monotonic() < deadline, f"runs so far: {runs}"
            time.sleep(0.1)


def stop(proc: subprocess.Popen[str]) -> Done:
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=30)
    assert "Traceback" not in stdout + stderr, stderr
    return Done(proc.returncode, stdout, stderr)


@pytest.fixture
def podium(tmp_path: Path) -> Podium:
    (tmp_path / "greet.yaml").write_text(WORKFLOW)
    return Podium(tmp_path)


def test_schedules_are_added_listed_and_removed_with_json(podium: Podium) -> None:
    added = podium("schedule", "add", "greet.yaml", "--cron", "0 9 * * 1-5", "-i", "who=ada",
                   "--json")
    assert added.code == 0, added.stderr
    doc = added.json()
    assert doc["name"] == "greet" and doc["workflow"] == "greet"
    assert (doc["kind"], doc["spec"], doc["status"]) == ("cron", "0 9 * * 1-5", "active")
    assert doc["inputs"] == {"who": "ada", "times": 1}
    assert doc["next_at"].endswith("Z") and doc["last_run_id"] is None
    second = podium("schedule", "add", "greet.yaml", "--every", "10m", "--inputs-json",
                    '{"who": "bob", "times": 2}', "--json")
    assert second.json()["name"] == "greet-2"  # derived names do not collide
    named = podium("schedule", "add", "greet.yaml", "--every", "1h", "--name", "greet-2",
                   "-i", "who=cy")
    assert named.code == 2 and "--name" in named.stderr
    listed = podium("schedule", "list", "--json")
    assert [s["name"] for s in listed.json()] == ["greet", "greet-2"]
    removed = podium("schedule", "remove", "greet-2", "--json")
    assert removed.code == 0 and removed.json()["name"] == "greet-2"
    gone = podium("schedule", "remove", doc["schedule_id"])
    assert gone.code == 0 and "removed" in gone.stderr
    assert podium("schedule", "list", "--json").json() == []
    unknown = podium("schedule", "remove", "greet")
    assert unknown.code == 1
    assert unknown.stderr.strip() == (
        "error: no schedule with id or name 'greet'; `podium schedule list` lists them"
    )


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--cron", "61 * * * *"], "--cron"),
        (["--cron", "not a cron"], "--cron"),
        (["--every", "0s"], "--every"),
        (["--every", "soon"], "--every"),
        (["--at", "2001-01-01T00:00"], "--at"),
        (["--at", "next tuesday"], "--at"),
        (["--cron", "0 9 * * *", "--tz", "Nowhere/Town"], "--tz"),
        ([], "--cron EXPR, --at TIME, --every DUR"),
        (["--every", "1m", "--cron", "* * * * *"], "--cron EXPR, --at TIME, --every DUR"),
    ],
)
def test_a_bad_spec_exits_2_naming_the_option_and_stores_nothing(
    podium: Podium, args: list[str], named: str
) -> None:
    result = podium("schedule", "add", "greet.yaml", *args, "-i", "who=ada")
    assert result.code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0]
    assert podium("schedule", "list", "--json").json() == []


def test_invalid_inputs_exit_2_and_store_nothing(podium: Podium) -> None:
    missing = podium("schedule", "add", "greet.yaml", "--every", "1m")
    assert missing.code == 2 and "inputs.who" in missing.stderr
    wrong = podium("schedule", "add", "greet.yaml", "--every", "1m", "-i", "who=a",
                   "-i", "times=many")
    assert wrong.code == 2 and "inputs.times" in wrong.stderr
    assert podium("schedule", "list", "--json").json() == []


def test_a_schedule_added_by_one_process_is_fired_by_a_scheduler_started_later(
    podium: Podium,
) -> None:
    added = podium("schedule", "add", "greet.yaml", "--every", "500ms", "-i", "who=ada")
    assert added.code == 0, added.stderr
    scheduler = podium.start("scheduler")
    try:
        runs = podium.wait_for_runs(2)
    finally:
        done = stop(scheduler)
    assert done.code == 0, done.stderr
    assert "podium scheduler stopped" in done.stderr
    [schedule] = podium("schedule", "list", "--json").json()
    assert schedule["last_run_id"] in {run_id for run_id, _ in runs}
    assert schedule["last_fired_at"] is not None


def test_an_at_schedule_fires_once_then_lists_as_done(podium: Podium) -> None:
    # An hour ahead: however slow `schedule add` is on a busy machine, the time is to come.
    at = datetime.fromtimestamp(time.time() + 3600, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    added = podium("schedule", "add", "greet.yaml", "--at", at, "-i", "who=ada", "--json")
    assert added.code == 0, added.stderr
    # The hour passes, as far as the schedule can tell: its tick comes due now.
    with contextlib.closing(sqlite3.connect(podium.workdir / "podium.db")) as db, db:
        db.execute("UPDATE schedules SET next_at = ?", (time.time(),))
    scheduler = podium.start("scheduler")
    try:
        podium.wait_for_runs(1)
        time.sleep(1.0)  # the scheduler keeps polling: nothing more fires
    finally:
        assert stop(scheduler).code == 0
    assert len(podium.runs()) == 1
    [schedule] = podium("schedule", "list", "--json").json()
    assert schedule["status"] == "done" and schedule["next_at"] is None


def test_two_scheduler_processes_on_one_store_fire_each_tick_once(
    tmp_path: Path, store_url: str
) -> None:
    podium = Podium(tmp_path, store_url)
    (tmp_path / "greet.yaml").write_text(WORKFLOW)
    added = podium("schedule", "add", "greet.yaml", "--every", "200ms", "-i", "who=ada")
    assert added.code == 0, added.stderr
    schedulers = [podium.start("scheduler"), podium.start("scheduler")]
    try:
        podium.wait_for_runs(6)
    finally:
        assert [stop(s).code for s in schedulers] == [0, 0]

    async def events() -> list[tuple[str, str]]:
        async with open_store(podium.store) as store:
            return [(e.event_type, e.correlation_id) for _, e in await store.list_events()]

    seen = asyncio.run(events())
    runs = {run_id for run_id, _ in podium.runs()}
    for kind in ("system.schedule.fired", "run.queued", "agent.task.started"):
        per_run = [run_id for event_type, run_id in seen if event_type == kind]
        assert sorted(per_run) == sorted(set(per_run)), kind  # once per run
        assert set(per_run) <= runs
    fired = [run_id for event_type, run_id in seen if event_type == "system.schedule.fired"]
    assert set(fired) == runs
