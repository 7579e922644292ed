"""In-process tests of the CLI's progress view, summary panel and error wrapping.

The view is fed events as the engine emits them; rendering goes to a recording console.
"""

from __future__ import annotations

import pytest
import typer
from rich.console import Console

from podium.cli.common import UsageProblem, guarded
from podium.cli.render import retries, summary_panel
from podium.cli.view import RunView, run_table, step_line
from podium.engine.summary import RunSummary, StepSummary, Tokens
from podium.errors import RunNotFound, WorkflowInvalid
from podium.events import Event
from podium.model.workflow import Workflow
from podium.plan import build_plan

WORKFLOW = Workflow.model_validate({
    "name": "demo",
    "steps": {
        "fetch": {"kind": "sim"},
        "fan": {"kind": "sim", "needs": ["fetch"], "for_each": [1, 2, 3]},
        "write": {"kind": "sim", "needs": ["fetch"], "fallback": {"kind": "sim"}},
    },
})
RUN = "run-1"


def event(event_type: str, **payload: object) -> Event:
    return Event(event_type=event_type, correlation_id=RUN, payload=payload)


def render(view: RunView) -> str:
    console = Console(record=True, width=140)
    console.print(run_table(view, now=0.0))
    return console.export_text()


def fed(*events: Event) -> RunView:
    view = RunView.of(RUN, WORKFLOW.name, build_plan(WORKFLOW))
    for e in events:
        view.apply(e)
    return view


def test_the_view_follows_attempts_instances_and_fallbacks_from_events() -> None:
    view = fed(
        event("run.started"),
        event("agent.task.started", step="fetch", index=-1, attempt=1),
        event("agent.task.retrying", step="fetch", index=-1, attempt=1, error="boom", delay_s=0.1),
        event("agent.task.started", step="fetch", index=-1, attempt=2),
        event("agent.task.completed", step="fetch", index=-1, attempt=2, duration_s=0.5),
        event("agent.task.started", step="fan", instances=3),
        event("agent.task.completed", step="fan", index=0, attempt=1, duration_s=0.1),
        event("agent.task.completed", step="fan", index=2, attempt=1, duration_s=0.1),
        event("agent.task.started", step="write", index=-1, attempt=1),
        event("agent.task.fallback", step="write", index=-1, error="down"),
    )
    fetch, fan, write = view.steps["fetch"], view.steps["fan"], view.steps["write"]
    assert (fetch.status, fetch.attempt, fetch.duration_s) == ("succeeded", 2, 0.5)
    assert (fan.status, fan.done, fan.total) == ("running", 2, 3)
    assert write.fallback and write.status == "running"
    text = render(view)
    assert "2/3 done" in text and "fallback" in text and "running" in text


def test_a_finished_step_is_one_compact_line() -> None:
    view = fed(
        event("agent.task.started", step="fetch", index=-1, attempt=3),
        event("agent.task.failed", step="fetch", index=-1, attempt=3, duration_s=1.5,
              error="HTTP 503"),
    )
    finished = view.steps["fetch"]
    assert step_line(finished).plain == "✗ fetch failed in 1.5s after 3 attempts: HTTP 503"


def test_compensation_events_mark_the_step_compensated() -> None:
    view = fed(
        event("agent.task.completed", step="write", index=-1, attempt=1, duration_s=0.1),
        event("agent.task.compensated", step="write", index=-1),
        event("run.completed", status="compensated", duration_s=2.0),
    )
    assert view.steps["write"].status == "compensated"
    assert view.finished and view.status == "compensated"


def _summary() -> RunSummary:
    def step(status: str, attempts: int, **extra: object) -> StepSummary:
        return StepSummary.model_validate({
            "status": status, "attempts": attempts, "started_at": None, "finished_at": None,
            "duration_s": 1.0, "output": None, "error": None, **extra,
        })

    return RunSummary(
        run_id=RUN, workflow="demo", workflow_version="1", status="failed", outputs={},
        steps={
            "fetch": step("compensated", 2),
            "fan": step("succeeded", 1, instances=[step("succeeded", 3), step("succeeded", 1)]),
            "write": step("failed", 3, error="HTTP 503", fallback_used=True),
        },
        cost_usd=0.25, tokens=Tokens(input=10, output=5), duration_s=4.0,
        error="step write failed", created_at="2026-01-01T00:00:00Z", started_at=None,
        finished_at=None,
    )


def test_the_summary_panel_counts_retries_and_names_fallbacks_compensations_and_failures() -> None:
    summary = _summary()
    assert retries(summary) == 1 + 2 + 2  # fetch, fan's instances, write
    console = Console(record=True, width=120)
    console.print(summary_panel(summary, build_plan(WORKFLOW)))
    rows = {
        cells[0]: cells[1]
        for line in console.export_text().splitlines()
        if len(cells := line.strip("│ ").split("  ", 1)) == 2
    }
    assert rows["status"].strip() == "failed"
    assert rows["critical path"].strip().startswith("fetch → ")
    assert rows["retries"].strip() == "5"
    assert rows["fallbacks used"].strip() == "write"
    assert rows["compensations"].strip() == "fetch"
    assert rows["failed: write"].strip() == "HTTP 503"
    assert rows["cost"].strip() == "$0.25 · tokens 10 in / 5 out"  # as `podium spend` says


@pytest.mark.parametrize(
    ("error", "code", "line"),
    [
        (WorkflowInvalid(["error: f.yaml: steps.a: bad"]), 2, "error: f.yaml: steps.a: bad"),
        (UsageProblem("--status 'x' is not a run status"), 2,
         "error: --status 'x' is not a run status"),
        (RunNotFound("r9"), 1, "error: no run with id 'r9'"),
        (ZeroDivisionError("division by zero"), 1,
         "error: internal error: ZeroDivisionError: division by zero"),
    ],
)
def test_guarded_commands_turn_errors_into_one_line_and_an_exit_code(
    error: Exception, code: int, line: str, capsys: pytest.CaptureFixture[str],
) -> None:
    @guarded
    def command() -> None:
        raise error

    with pytest.raises(typer.Exit) as exit_info:
        command()
    assert exit_info.value.exit_code == code
    captured = capsys.readouterr()
    assert captured.err.startswith(line)
    assert "Traceback" not in captured.err + captured.out
