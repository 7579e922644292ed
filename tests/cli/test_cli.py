"""End-to-end tests of `podium` as a user runs it: exit codes, --json documents, stderr lines.

Each test drives the real command in a subprocess on its own SQLite store (see cli_support.py).
"""

from __future__ import annotations

import signal
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from cli_support import Podium, finish

SUMMARY_KEYS = {
    "run_id", "workflow", "status", "outputs", "steps", "cost_usd", "tokens", "duration_s",
    "error",
}
STEP_KEYS = {"status", "attempts", "started_at", "finished_at", "duration_s", "output", "error"}

COUNTED = """
name: counted
inputs:
  n: {type: integer, required: true}
steps:
  first:
    kind: sim
    latency: 5ms
    output: {n: "{{ inputs.n }}"}
  second:
    needs: [first]
    kind: sim
    output: {doubled: "{{ steps.first.output.n * 2 }}"}
"""

REPLAYABLE = """
name: replayable
steps:
  first:
    kind: python
    call: cli_helpers:count
    input: {counter: "COUNTER"}
  second:
    needs: [first]
    kind: python
    call: cli_helpers:needs_marker
    input: {marker: "MARKER"}
    retry: {attempts: 2, backoff: 1ms}
"""

# The waits are answered by the test (a signal, Ctrl-C): their timeout only bounds a broken
# test, and a step's timeout is real time, which a busy machine eats quickly.
APPROVAL = """
name: approval
steps:
  draft: {kind: sim, output: {text: hello}}
  approve:
    needs: [draft]
    kind: wait
    signal: approve
    timeout: 1h
    retry: {attempts: 1}
"""

BOOKING = """
name: booking
steps:
  book: {kind: sim, output: {id: 7}, compensate: {kind: sim, output: undone}}
  approve: {kind: wait, needs: [book], timeout: 1h, retry: {attempts: 1}}
"""

INVALID = """
name: broken
steps:
  a: {kind: sim, latency: 5 parsecs}
  b: {kind: sim, needs: [nowhere]}
"""


@pytest.fixture
def podium(tmp_path: Path) -> Podium:
    return Podium(tmp_path / "p.db", tmp_path)


@pytest.fixture(scope="module")
def shared_podium(tmp_path_factory: pytest.TempPathFactory) -> Podium:
    """One store for the tests that only read what an earlier run left."""
    path = tmp_path_factory.mktemp("shared")
    return Podium(path / "p.db", path)


def is_utc_iso(text: str) -> bool:
    return text.endswith("Z") and datetime.fromisoformat(text.replace("Z", "+00:00")) is not None


@pytest.fixture(scope="module")
def succeeded(shared_podium: Podium) -> dict[str, Any]:
    """The summary of one successful run (with -i n=5) in the shared store."""
    path = shared_podium.write("counted.yaml", COUNTED)
    result = shared_podium("run", str(path), "-i", "n=5", "--json")
    assert result.code == 0, result.stderr
    summary: dict[str, Any] = result.json()
    return summary


def test_run_json_prints_one_summary_document_with_the_design_keys(
    succeeded: dict[str, Any],
) -> None:
    assert succeeded.keys() >= SUMMARY_KEYS
    assert succeeded["status"] == "succeeded"
    assert succeeded["workflow"] == "counted"
    assert set(succeeded["steps"]) == {"first", "second"}
    for step in succeeded["steps"].values():
        assert step.keys() >= STEP_KEYS
        assert step["status"] == "succeeded"
        assert is_utc_iso(step["started_at"]) and is_utc_iso(step["finished_at"])
    assert succeeded["tokens"] == {"input": 0, "output": 0}


def test_an_integer_input_given_with_dash_i_reaches_the_steps_as_an_int(
    succeeded: dict[str, Any],
) -> None:
    assert succeeded["outputs"]["first"] == {"n": 5}
    assert succeeded["outputs"]["second"] == {"doubled": 10}


def test_status_json_shows_the_same_summary_and_its_events(
    shared_podium: Podium, succeeded: dict[str, Any],
) -> None:
    result = shared_podium("status", succeeded["run_id"], "--json", "--events")
    assert result.code == 0, result.stderr
    status = result.json()
    assert status["status"] == "succeeded"
    assert status["outputs"] == succeeded["outputs"]
    types = [e["event_type"] for e in status["events"]]
    assert types[0] == "run.queued" and types[-1] == "run.completed"
    assert all(e["correlation_id"] == succeeded["run_id"] for e in status["events"])


def test_runs_json_lists_runs_with_utc_timestamps(
    shared_podium: Podium, succeeded: dict[str, Any],
) -> None:
    result = shared_podium("runs", "--json", "--workflow", "counted")
    assert result.code == 0, result.stderr
    (run,) = result.json()
    assert set(run) == {
        "run_id", "workflow", "workflow_version", "status", "priority", "created_at",
        "started_at", "finished_at", "duration_s", "error", "parent_run_id",
    }
    assert run["run_id"] == succeeded["run_id"]
    assert (run["workflow"], run["workflow_version"]) == ("counted", "1")
    assert run["status"] == "succeeded"
    assert is_utc_iso(run["created_at"]) and is_utc_iso(run["finished_at"])
    assert is_utc_iso(run["started_at"]) and run["priority"] == "normal"
    assert run["duration_s"] > 0


def test_signalling_a_finished_run_exits_1_and_says_it_ended(
    shared_podium: Podium, succeeded: dict[str, Any],
) -> None:
    result = shared_podium("signal", succeeded["run_id"], "approve", '{"ok": true}')
    assert result.code == 1
    assert "already ended with status succeeded" in result.stderr
    assert result.stderr.startswith("error: ")


def test_a_signal_payload_that_is_not_json_is_a_usage_error(podium: Podium) -> None:
    result = podium("signal", "some-run", "approve", "{oops")
    assert result.code == 2
    assert "error: the signal payload is not valid JSON" in result.stderr
    assert not podium.store_path.exists()


def test_cancelling_an_unknown_run_exits_1(podium: Podium) -> None:
    result = podium("cancel", "no-such-run")
    assert result.code == 1
    assert result.stderr.strip() == (
        "error: no run with id 'no-such-run'; `podium runs` lists the known runs"
    )


def test_a_failed_run_goes_to_the_dlq_and_replay_reuses_its_succeeded_steps(
    podium: Podium,
) -> None:
    counter, marker = podium.workdir / "counter.txt", podium.workdir / "marker"
    text = REPLAYABLE.replace("COUNTER", str(counter)).replace("MARKER", str(marker))
    path = podium.write("replayable.yaml", text)

    failed = podium("run", str(path), "--json")
    assert failed.code == 1
    first = failed.json()
    assert first["status"] == "failed"
    assert first["steps"]["second"]["attempts"] == 2
    assert "marker" in first["steps"]["second"]["error"]

    (entry,) = podium("dlq", "list", "--json").json()
    assert entry["run_id"] == first["run_id"]
    assert entry["failed_steps"] == ["second"]

    marker.touch()
    replayed = podium("dlq", "replay", first["run_id"], "--json")
    assert replayed.code == 0, replayed.stderr
    again = replayed.json()
    assert again["run_id"] == first["run_id"]
    assert again["status"] == "succeeded"
    assert again["steps"]["first"] == first["steps"]["first"]  # reused, not re-run
    assert again["steps"]["second"]["attempts"] == 1  # attempts restart on replay
    assert counter.read_text().splitlines() == ["ran"]
    assert podium("dlq", "list", "--json").json() == []


def test_an_invalid_workflow_exits_2_naming_each_field_and_writes_nothing(
    podium: Podium,
) -> None:
    path = podium.write("broken.yaml", INVALID)
    result = podium("run", str(path), "--json")
    assert result.code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert all(line.startswith("error: ") for line in lines)
    assert any("steps.a.latency" in line and "5 parsecs" in line for line in lines)
    assert any("steps.b.needs" in line and "nowhere" in line for line in lines)
    assert not podium.store_path.exists()


def test_a_missing_required_input_exits_2_and_writes_nothing(podium: Podium) -> None:
    path = podium.write("counted.yaml", COUNTED)
    result = podium("run", str(path))
    assert result.code == 2
    assert result.stderr.strip() == "error: inputs.n: missing required input (a integer)"
    assert not podium.store_path.exists()


def test_plan_json_gives_order_groups_critical_path_estimate_and_resources(
    podium: Podium,
) -> None:
    path = podium.write("counted.yaml", COUNTED)
    plan = podium("plan", str(path), "--json", store=False).json()
    assert plan == {
        "order": ["first", "second"],
        "groups": [["first"], ["second"]],
        "critical_path": ["first", "second"],
        "estimated_duration_s": pytest.approx(0.005),
        "resources": {"cpu": 0.0, "memory_mib": 0.0, "api_calls": 0},
    }


def test_validate_exits_0_for_a_valid_file_and_2_with_every_error(podium: Podium) -> None:
    good = podium.write("counted.yaml", COUNTED)
    bad = podium.write("broken.yaml", INVALID)
    valid = podium("validate", str(good), store=False)
    assert (valid.code, valid.stdout.strip()) == (0, f"{good}: valid (2 steps)")
    invalid = podium("validate", str(bad), store=False)
    assert invalid.code == 2
    assert len(invalid.stderr.splitlines()) == 2
    assert all(line.startswith(f"error: {bad}: steps.") for line in invalid.stderr.splitlines())


def test_a_wait_step_is_approved_by_a_signal_from_a_second_process(podium: Podium) -> None:
    path = podium.write("approval.yaml", APPROVAL)
    running = podium.start("run", str(path), "--json")
    try:
        run_id = podium.wait_for_running()
        sent = podium("signal", run_id, "approve", '{"approved": true, "by": "ana"}')
        assert sent.code == 0, sent.stderr
        assert "signal 'approve' sent" in sent.stdout
        result = finish(running)
    finally:
        running.kill()
    assert result.code == 0, result.stderr
    summary = result.json()
    assert summary["run_id"] == run_id
    assert summary["outputs"]["approve"] == {"approved": True, "by": "ana"}


def test_ctrl_c_during_run_cancels_it_compensates_and_exits_1(podium: Podium) -> None:
    path = podium.write("booking.yaml", BOOKING)
    running = podium.start("run", str(path), "--json")
    try:
        podium.wait_for_running("approve")  # `book` is done: there is something to compensate
        running.send_signal(signal.SIGINT)
        result = finish(running)
    finally:
        running.kill()
    assert result.code == 1
    summary = result.json()
    assert summary["status"] == "cancelled"
    assert summary["steps"]["book"]["status"] == "compensated"
    assert summary["steps"]["approve"]["status"] == "cancelled"
    assert "interrupted: cancelling the run" in result.stderr


def test_dlq_purge_without_yes_and_without_a_terminal_aborts_with_exit_1(
    podium: Podium,
) -> None:
    result = podium("dlq", "purge")
    assert result.code == 1
    assert "error: purge not confirmed; nothing was deleted" in result.stderr


def test_the_line_progress_names_each_finished_step_when_stderr_is_not_a_terminal(
    podium: Podium,
) -> None:
    path = podium.write("counted.yaml", COUNTED)
    result = podium("run", str(path), "-i", "n=1")
    assert result.code == 0
    lines = result.stderr.splitlines()
    assert lines[0].startswith("run ") and lines[0].endswith(" queued")  # the id, at submit
    assert lines[1].startswith("✓ first succeeded in ")
    assert lines[2].startswith("✓ second succeeded in ")
    assert lines[-1].startswith("■ run ") and "succeeded" in lines[-1]
    assert "status" in result.stdout and "critical path" in result.stdout
