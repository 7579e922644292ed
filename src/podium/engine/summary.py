"""The run summary (`podium run --json`, `GET /v1/runs/{id}`), built from rows.

Timestamps are UTC ISO 8601 strings; durations are seconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel

from podium.events import utc_iso
from podium.store import codec
from podium.store.records import RunState, StepState


class StepSummary(BaseModel):
    status: str
    attempts: int
    started_at: str | None
    finished_at: str | None
    duration_s: float | None
    output: Any
    error: str | None
    error_type: str | None = None  # a failed step's exception type
    traceback: str | None = None  # its traceback: user frames, truncated, secrets masked
    fallback_used: bool = False
    compensation_error: str | None = None
    instances: list[StepSummary] | None = None


class Tokens(BaseModel):
    input: int
    output: int


class RunSummary(BaseModel):
    run_id: str
    workflow: str
    workflow_version: str
    status: str
    outputs: dict[str, Any]
    steps: dict[str, StepSummary]
    cost_usd: float
    tokens: Tokens
    duration_s: float | None
    error: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    parent_run_id: str | None = None


def _iso(ts: float | None) -> str | None:
    return None if ts is None else utc_iso(ts)


def _span(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else round(end - start, 6)


def _output(state: StepState) -> Any:
    if state.output is None and state.output_blob is not None:
        state.output = codec.decode(state.output_blob)
    return state.output


def step_summary(state: StepState, instances: Sequence[StepState] | None = None) -> StepSummary:
    return StepSummary(
        status=state.status,
        attempts=state.attempts,
        started_at=_iso(state.started_at),
        finished_at=_iso(state.finished_at),
        duration_s=_span(state.started_at, state.finished_at),
        output=_output(state),
        error=state.error,
        error_type=state.error_type,
        traceback=state.traceback,
        fallback_used=state.fallback_used,
        compensation_error=state.compensation_error,
        instances=None if instances is None else [step_summary(i) for i in instances],
    )


def build_summary(row: RunState, order: Sequence[str], states: Iterable[StepState]) -> RunSummary:
    parents: dict[str, StepState] = {}
    instances: dict[str, list[StepState]] = {}
    for state in states:
        if state.index < 0:
            parents[state.step_id] = state
        else:
            instances.setdefault(state.step_id, []).append(state)
    steps: dict[str, StepSummary] = {}
    for step_id in order:
        parent = parents.get(step_id) or StepState(row.run_id, step_id)
        children = (
            sorted(instances[step_id], key=lambda s: s.index) if step_id in instances else None
        )
        steps[step_id] = step_summary(parent, children)
    outputs = {k: s.output for k, s in steps.items() if s.status in ("succeeded", "compensated")}
    return RunSummary(
        run_id=row.run_id,
        workflow=row.workflow,
        workflow_version=row.workflow_version,
        status=row.status,
        outputs=outputs,
        steps=steps,
        cost_usd=row.cost_usd,  # as the ledger holds it: never rounded
        tokens=Tokens(input=row.tokens_in, output=row.tokens_out),
        duration_s=_span(row.started_at or row.created_at, row.finished_at),
        error=row.error,
        created_at=utc_iso(row.created_at),
        started_at=_iso(row.started_at),
        finished_at=_iso(row.finished_at),
        parent_run_id=row.parent_run_id,
    )
