"""`podium gc` as an operator meets it: old finished runs go, a dry run counts, a bad duration
is one line and exit 2, `[retention]` gives the defaults, and a pruned audit log verifies."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from cli_support import Podium

from podium.events import Event
from podium.store import Batch, RunState, StepState, open_store

DAY = 86400.0


@pytest.fixture
def podium(tmp_path: Path) -> Podium:
    return Podium(tmp_path / "p.db", tmp_path)


def seed(podium: Podium, ages_days: dict[str, float]) -> None:
    async def write() -> None:
        now = time.time()
        batch = Batch(definitions={"d1": b"{}"})
        for run_id, age in ages_days.items():
            finished = now - age * DAY
            batch.runs[run_id] = RunState(
                run_id, "wf", "1", "d1", {}, status="succeeded", created_at=finished - 1,
                started_at=finished - 1, finished_at=finished,
            )
            for step_id in ("a", "b"):
                step = StepState(run_id, step_id, status="succeeded")
                batch.steps[step.key] = step
            batch.events.append(Event("run.queued", run_id, {}, timestamp=finished - 1))
        async with open_store(podium.store) as store:
            await store.write(batch)

    asyncio.run(write())


def run_ids(podium: Podium) -> set[str]:
    listed = podium("runs", "--json").json()
    rows = listed["runs"] if isinstance(listed, dict) else listed
    return {row["run_id"] for row in rows}


def test_gc_deletes_old_finished_runs_and_says_how_many(podium: Podium) -> None:
    seed(podium, {"old1": 40, "old2": 35, "young": 3})

    dry = podium("gc", "--older-than", "30d", "--dry-run", "--json")
    assert dry.code == 0
    assert dry.json()["dry_run"] is True and (dry.json()["runs"], dry.json()["steps"]) == (2, 4)
    assert run_ids(podium) == {"old1", "old2", "young"}  # nothing deleted

    done = podium("gc", "--older-than", "30d", "--batch", "1")
    assert done.code == 0
    assert done.stdout.strip().startswith("gc deleted 2 run(s), 4 step(s), 0 event(s)")
    assert run_ids(podium) == {"young"}
    again = podium("gc", "--older-than", "30d", "--json").json()
    assert (again["runs"], again["steps"], again["events"]) == (0, 0, 0)


@pytest.mark.parametrize("bad", ["soon", "-3d", "0"])
def test_a_bad_duration_is_one_line_and_exit_2(podium: Podium, bad: str) -> None:
    result = podium("gc", "--older-than", bad)
    assert result.code == 2
    assert result.stderr.startswith("error: --older-than:") and len(result.stderr.splitlines()) == 1


def test_without_a_duration_gc_asks_for_one(podium: Podium) -> None:
    result = podium("gc")
    assert result.code == 2 and "[retention] finished_runs" in result.stderr


def test_retention_settings_give_the_defaults(podium: Podium) -> None:
    seed(podium, {"old": 12, "young": 8})
    (podium.workdir / "podium.toml").write_text('[retention]\nfinished_runs = "10d"\n')
    result = podium("gc", "--json")
    assert result.code == 0 and result.json()["runs"] == 1
    assert run_ids(podium) == {"young"}


def test_a_pruned_audit_log_still_verifies(podium: Podium) -> None:
    seed(podium, {"ancient": 500, "old": 40, "young": 1})
    head = podium("audit", "head").stdout.split()

    result = podium("gc", "--older-than", "30d", "--audit-older-than", "400d", "--json").json()
    assert (result["runs"], result["events"], result["audit_anchor_seq"]) == (2, 1, 1)

    verified = podium("audit", "verify")
    assert verified.code == 0, verified.stderr
    assert "from the retention anchor at entry 1" in verified.stdout
    # The head kept elsewhere is still in the chain.
    assert podium("audit", "verify", "--expect-head", head[1]).code == 0
