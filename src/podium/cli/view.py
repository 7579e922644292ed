"""What the progress display knows of a run, built from its events, and how it is drawn.

Handlers are dispatched by event type; each keeps one step's view up to date.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from rich.table import Table
from rich.text import Text

from podium.cli.render import clip, seconds, status_text
from podium.events import Event
from podium.model.status import STEP_FINAL
from podium.plan import Plan
from podium.store.records import RunState, StepState


@dataclass
class StepView:
    step_id: str
    level: int
    status: str = "pending"
    attempt: int = 0
    started_at: float | None = None
    duration_s: float | None = None
    fallback: bool = False
    compensation: str | None = None  # "compensated" or "compensation failed"
    total: int | None = None  # for_each instances
    done: int = 0
    note: str | None = None  # the latest error, retry, wait or skip reason

    def elapsed_s(self, now: float) -> float | None:
        if self.duration_s is not None or self.started_at is None:
            return self.duration_s
        return now - self.started_at if self.status == "running" else None


@dataclass
class RunView:
    """What the progress view knows of one run, kept up to date by its events."""

    run_id: str
    workflow: str
    groups: tuple[tuple[str, ...], ...]
    steps: dict[str, StepView]
    status: str = "queued"
    started_at: float = field(default_factory=time.time)
    duration_s: float | None = None
    finished: bool = False

    @classmethod
    def of(cls, run_id: str, workflow: str, plan: Plan) -> RunView:
        steps = {sid: StepView(sid, plan.levels[sid]) for sid in plan.order}
        return cls(run_id, workflow, plan.groups, steps)

    def seed(self, row: RunState, states: Iterable[StepState]) -> None:
        """Takes the committed state (a resumed or replayed run starts midway)."""
        self.status, self.finished = row.status, row.done
        self.started_at = row.started_at or row.created_at
        instances: dict[str, list[StepState]] = {}
        for st in states:
            view = self.steps.get(st.step_id)
            if view is None:
                continue
            if st.index >= 0:
                instances.setdefault(st.step_id, []).append(st)
                continue
            view.status, view.attempt, view.started_at = st.status, st.attempts, st.started_at
            view.fallback, view.note = st.fallback_used, st.error
            view.duration_s = (
                st.finished_at - st.started_at
                if st.finished_at is not None and st.started_at is not None else None
            )
            if st.compensation_error is not None:
                view.compensation = "compensation failed"
            elif st.status == "compensated":
                view.compensation = "compensated"
        for step_id, items in instances.items():
            self.steps[step_id].total = len(items)
            self.steps[step_id].done = sum(1 for i in items if i.status in STEP_FINAL)

    def apply(self, event: Event) -> StepView | None:
        """Updates the view; returns the step the event finished (for the line display)."""
        payload = event.payload
        if event.event_type.startswith("run."):
            _RUN_HANDLERS.get(event.event_type, _ignore_run)(self, event)
            return None
        view = self.steps.get(str(payload.get("step")))
        handler = _STEP_HANDLERS.get(event.event_type)
        if view is None or handler is None:
            return None
        index = payload.get("index")
        if isinstance(index, int) and index >= 0:
            _INSTANCE_HANDLERS.get(event.event_type, _ignore_step)(view, event)
            return None
        return view if handler(view, event) else None


# -- event handlers: each returns True when its step reached a final state -----------------------


def _ignore_step(view: StepView, event: Event) -> bool:
    return False


def _ignore_run(run: RunView, event: Event) -> None:
    return None


def _on_started(view: StepView, event: Event) -> bool:
    view.status = "running"
    view.attempt = int(event.payload.get("attempt", view.attempt or 1))
    if event.payload.get("after_waiting"):  # it got its slot: it starts only now
        view.started_at, view.note = event.timestamp, None
    view.started_at = view.started_at or event.timestamp
    view.duration_s = None
    if "instances" in event.payload:
        view.total, view.done = int(event.payload["instances"]), 0
    return False


def _finished(status: str) -> Callable[[StepView, Event], bool]:
    def handle(view: StepView, event: Event) -> bool:
        payload = event.payload
        view.status = status
        view.attempt = int(payload.get("attempt", view.attempt))
        view.fallback = view.fallback or bool(payload.get("fallback_used"))
        duration = payload.get("duration_s")
        if isinstance(duration, int | float):
            view.duration_s = float(duration)
        elif view.started_at is not None:
            view.duration_s = event.timestamp - view.started_at
        reason = payload.get("error") or payload.get("reason")
        view.note = str(reason) if reason else None
        return True

    return handle


def _on_retrying(view: StepView, event: Event) -> bool:
    view.note = f"retry after {event.payload.get('delay_s')}s: {event.payload.get('error')}"
    return False


def _on_fallback(view: StepView, event: Event) -> bool:
    view.fallback = True
    view.note = f"fallback after: {event.payload.get('error')}"
    return False


def _on_waiting(view: StepView, event: Event) -> bool:
    if event.payload.get("for") == "slot":  # not running until it gets a concurrency slot
        view.status, view.note = "ready", "waiting for a concurrency slot"
        return False
    view.note = f"waiting for signal {event.payload.get('signal')!r}"
    return False


def _on_compensated(view: StepView, event: Event) -> bool:
    view.compensation, view.status = "compensated", "compensated"
    return True


def _on_compensation_failed(view: StepView, event: Event) -> bool:
    view.compensation = "compensation failed"
    view.note = str(event.payload.get("error"))
    return True


_STEP_HANDLERS: dict[str, Callable[[StepView, Event], bool]] = {
    "agent.task.started": _on_started,
    "agent.task.completed": _finished("succeeded"),
    "agent.task.failed": _finished("failed"),
    "agent.task.skipped": _finished("skipped"),
    "agent.task.cancelled": _finished("cancelled"),
    "agent.task.retrying": _on_retrying,
    "agent.task.fallback": _on_fallback,
    "agent.task.waiting": _on_waiting,
    "agent.task.compensated": _on_compensated,
    "agent.task.compensation_failed": _on_compensation_failed,
}


def _instance_done(view: StepView, event: Event) -> bool:
    view.done += 1
    return False


def _instance_compensation(view: StepView, event: Event) -> bool:
    failed = event.event_type.endswith("compensation_failed")
    if failed or view.compensation is None:
        view.compensation = "compensation failed" if failed else "compensated"
    return False


_INSTANCE_HANDLERS: dict[str, Callable[[StepView, Event], bool]] = {
    "agent.task.completed": _instance_done,
    "agent.task.failed": _instance_done,
    "agent.task.compensated": _instance_compensation,
    "agent.task.compensation_failed": _instance_compensation,
}


def _on_run_started(run: RunView, event: Event) -> None:
    run.status = "running"
    run.started_at = event.timestamp


def _on_run_stopping(run: RunView, event: Event) -> None:
    run.status = f"stopping ({event.payload.get('outcome')})"


def _on_run_completed(run: RunView, event: Event) -> None:
    run.status, run.finished = str(event.payload.get("status")), True
    duration = event.payload.get("duration_s")
    run.duration_s = float(duration) if isinstance(duration, int | float) else None


def _on_run_requeued(run: RunView, event: Event) -> None:
    run.status = "queued"


_RUN_HANDLERS: dict[str, Callable[[RunView, Event], None]] = {
    "run.started": _on_run_started,
    "run.resumed": _on_run_started,
    "run.stopping": _on_run_stopping,
    "run.completed": _on_run_completed,
    "run.replayed": _on_run_requeued,
}


# -- rendering ----------------------------------------------------------------------------------

_MARKS = {
    "succeeded": "✓", "failed": "✗", "skipped": "-", "cancelled": "⊘", "compensated": "↺",
}


def step_line(view: StepView) -> Text:
    """One compact line for a finished step: `✓ draft succeeded in 20ms (attempt 1)`."""
    line = Text(f"{_MARKS.get(view.status, '•')} {view.step_id} ")
    line.append_text(status_text(view.status))
    if view.compensation is not None and view.status != "compensated":
        line.append(f" ({view.compensation})")
    if view.duration_s is not None and view.status in ("succeeded", "failed"):
        line.append(f" in {seconds(view.duration_s)}")
    if view.attempt > 1 or view.status == "failed":
        line.append(f" after {view.attempt} attempt{'s' if view.attempt != 1 else ''}")
    if view.fallback:
        line.append(" (fallback used)")
    if view.note and view.status != "succeeded":
        line.append(f": {clip(view.note, 200)}")
    return line


def run_line(run: RunView) -> Text:
    line = Text(f"■ run {run.run_id} ")
    line.append_text(status_text(run.status))
    if run.duration_s is not None:
        line.append(f" in {seconds(run.duration_s)}")
    return line


def run_table(run: RunView, now: float) -> Table:
    elapsed = run.duration_s if run.finished else now - run.started_at
    title = Text(f"{run.workflow} · {run.run_id} · ")
    title.append_text(status_text(run.status))
    title.append(f" · {seconds(elapsed)}")
    table = Table(title=title, title_justify="left")
    for column in ("level", "step", "status", "attempt", "time", "notes"):
        table.add_column(column, justify="right" if column in ("level", "attempt") else "left")
    for level, group in enumerate(run.groups):
        for position, step_id in enumerate(group):
            view = run.steps[step_id]
            table.add_row(
                str(level) if position == 0 else "", step_id, status_text(view.status),
                str(view.attempt or ""), seconds(view.elapsed_s(now)), _notes(view),
                end_section=position == len(group) - 1,
            )
    return table


def _notes(view: StepView) -> Text:
    notes = Text()
    parts: list[tuple[str, str]] = []
    if view.total is not None:
        parts.append((f"{view.done}/{view.total} done", "cyan"))
    if view.fallback:
        parts.append(("fallback", "yellow"))
    if view.compensation is not None:
        parts.append((view.compensation, "blue" if view.compensation == "compensated" else "red"))
    if view.note and view.status != "succeeded":
        parts.append((clip(view.note, 60), "dim"))
    for i, (text, style) in enumerate(parts):
        notes.append(("; " if i else "") + text, style=style)
    return notes
