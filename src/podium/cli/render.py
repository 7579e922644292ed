"""Tables and panels the commands print: runs, steps, events and DLQ entries.

Pure functions of run summaries and JSON documents (podium.store.documents); the caller prints.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from podium.control.budgets import money
from podium.engine.summary import RunSummary, StepSummary
from podium.engine.tracebacks import shorten
from podium.plan import Plan
from podium.plan.render import format_seconds

STATUS_STYLE = {
    "pending": "dim", "ready": "cyan", "queued": "dim", "running": "yellow",
    "succeeded": "green", "degraded": "yellow", "failed": "bold red", "skipped": "dim",
    "cancelled": "magenta", "compensated": "blue", "timed_out": "bold red", "expired": "red",
}
NOTE_WIDTH = 70  # errors can be long; a table cell keeps the start, `status` shows the rest


# Columns a reader copies or scans (ids, statuses, times) never wrap; free text takes what is left.
_NO_WRAP = frozenset({
    "run", "id", "status", "created", "added", "duration", "seq", "time (UTC)", "event", "level",
    "attempts", "retries",
})


_IDS = frozenset({"run", "id"})  # uuids: shown whole, whatever the terminal's width


def new_table(
    title: str, columns: Iterable[str], right: Iterable[str] = (), whole: Iterable[str] = ()
) -> Table:
    """A table whose id columns (`run`, `id`, and `whole`) are never cut or wrapped."""
    whole = frozenset(whole)
    table = Table(title=title, title_justify="left")
    aligned = set(right)
    for column in columns:
        table.add_column(
            column, justify="right" if column in aligned else "left",
            no_wrap=column in _NO_WRAP or column in whole,
            min_width=36 if column in _IDS or column in whole else None,
        )
    return table


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def seconds(value: float | None) -> str:
    return "—" if value is None else format_seconds(value)


def clip(text: str, width: int = NOTE_WIDTH) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


# -- run summary --------------------------------------------------------------------------------


def _units(summary: RunSummary) -> Iterable[StepSummary]:
    """Each step, or its instances for a for_each step: where attempts are counted."""
    for step in summary.steps.values():
        yield from step.instances or [step]


def retries(summary: RunSummary) -> int:
    return sum(max(unit.attempts - 1, 0) for unit in _units(summary))


def summary_panel(summary: RunSummary, plan: Plan | None) -> Panel:
    """Status, duration, critical path, retries, fallbacks, compensations, failures and cost."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("status", status_text(summary.status))
    grid.add_row("duration", seconds(summary.duration_s))
    if plan is not None:
        grid.add_row("critical path", " → ".join(plan.critical_path))
    grid.add_row("retries", str(retries(summary)))
    steps = summary.steps
    fallbacks = [sid for sid, s in steps.items() if s.fallback_used]
    grid.add_row("fallbacks used", ", ".join(fallbacks) or "none")
    grid.add_row("compensations", _compensations(steps) or "none")
    for step_id, step in steps.items():
        if step.status == "failed" and step.error:
            grid.add_row(Text(f"failed: {step_id}", style="red"), Text(step.error))
    if summary.error:
        grid.add_row("error", Text(summary.error))
    tokens = summary.tokens
    grid.add_row(
        "cost", f"{money(summary.cost_usd)} · tokens {tokens.input} in / {tokens.output} out"
    )
    title = f"run {summary.run_id} · {summary.workflow} v{summary.workflow_version}"
    return Panel(grid, title=title, title_align="left", expand=False,
                 border_style=STATUS_STYLE.get(summary.status, ""))


def _compensations(steps: dict[str, StepSummary]) -> str:
    """In the order they ran: the newest completion is undone first."""
    parts = []
    ran = sorted(steps.items(), key=lambda item: item[1].finished_at or "", reverse=True)
    for step_id, step in ran:
        if step.compensation_error:
            parts.append(f"{step_id} (failed: {clip(step.compensation_error, 50)})")
        elif step.status == "compensated":
            parts.append(step_id)
    return ", ".join(parts)


def steps_table(summary: RunSummary, plan: Plan | None) -> Table:
    """The run's steps by plan level, for `podium status`."""
    table = new_table(
        "steps", ("level", "step", "status", "attempts", "duration", "notes"),
        right=("level", "attempts"),
    )
    groups = plan.groups if plan is not None else (tuple(summary.steps),)
    for level, group in enumerate(groups):
        for position, step_id in enumerate(group):
            step = summary.steps.get(step_id)
            if step is None:
                continue
            table.add_row(
                str(level) if position == 0 else "", step_id, status_text(step.status),
                str(step.attempts), seconds(step.duration_s), _step_notes(step),
                end_section=position == len(group) - 1,
            )
    return table


def _step_notes(step: StepSummary) -> str:
    notes = []
    if step.instances is not None:
        done = sum(1 for i in step.instances if i.status in ("succeeded", "compensated"))
        notes.append(f"{done}/{len(step.instances)} instances")
    if step.fallback_used:
        notes.append("fallback used")
    if step.compensation_error:
        notes.append(f"compensation failed: {step.compensation_error}")
    if step.error:
        notes.append(step.error)
    return clip("; ".join(notes))


def summaries_table(summaries: Sequence[RunSummary]) -> Table:
    table = new_table("runs", ("run", "workflow", "status", "duration", "retries", "error"))
    for s in summaries:
        table.add_row(
            s.run_id, s.workflow, status_text(s.status), seconds(s.duration_s),
            str(retries(s)), clip(s.error or ""),
        )
    return table


# -- runs, events, DLQ (drawn from their JSON documents, local or from the API) -------------


def _when(iso: str) -> str:
    return iso[:19].replace("T", " ")


def runs_table(runs: Sequence[dict[str, Any]]) -> Table:
    """`run_json` documents as a table."""
    table = new_table("runs", ("run", "workflow", "status", "created", "duration", "error"))
    for run in runs:
        table.add_row(
            run["run_id"], f"{run['workflow']} v{run['workflow_version']}",
            status_text(run["status"]), _when(run["created_at"]), seconds(run["duration_s"]),
            clip(run["error"] or "", 50),
        )
    return table


def events_table(events: Sequence[dict[str, Any]], *, with_run: bool) -> Table:
    """`event_json` documents as a table."""
    columns = ["seq", "time (UTC)", *(["run"] if with_run else []), "event", "payload"]
    table = new_table("events", columns, right=("seq",))
    for event in events:
        cells = [str(event["seq"]), event["timestamp"][11:23]]
        if with_run:
            cells.append(event["correlation_id"])
        payload = ", ".join(f"{k}={v}" for k, v in event["payload"].items())
        table.add_row(*cells, event["event_type"], clip(payload, 80))
    return table


def dlq_table(entries: Sequence[dict[str, Any]]) -> Table:
    """`dlq_json` documents as a table."""
    table = new_table(
        "dead-letter queue", ("run", "workflow", "status", "failed steps", "added", "error")
    )
    for e in entries:
        table.add_row(
            e["run_id"], e["workflow"], status_text(e["status"]),
            ", ".join(e["failed_steps"]) or "—", _when(e["added_at"]), clip(e["error"] or "", 50),
        )
    return table


def status_view(summary: RunSummary, plan: Plan | None) -> RenderableType:
    return Group(summary_panel(summary, plan), steps_table(summary, plan), *_tracebacks(summary))


def _tracebacks(summary: RunSummary) -> list[RenderableType]:
    """Each failed step's traceback, its last lines (`--json` has the whole)."""
    panels: list[RenderableType] = []
    for step_id, step in summary.steps.items():
        if step.status == "failed" and step.traceback:
            title = f"traceback: {step_id} ({step.error_type or 'error'})"
            panels.append(Panel(Text(shorten(step.traceback)), title=title, title_align="left",
                                expand=False, border_style="red"))
    return panels
