"""A run's page: its DAG (live over SSE), timeline, steps with outputs, errors, cost and
tokens, its events, and the actions the caller's role allows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, StreamingResponse

from podium.api.auth import Permission, Principal, permit
from podium.api.dashboard.dag import Dag, layout
from podium.api.dashboard.gate import PREFIX
from podium.api.dashboard.render import page
from podium.api.dashboard.timeline import KINDS, Timeline, timeline
from podium.api.deps import EngineDep, StreamsDep
from podium.api.events import SSE_HEADERS
from podium.api.runs import visible_run
from podium.api.streams import stream_events
from podium.engine.engine import Engine
from podium.engine.summary import RunSummary
from podium.events import Event
from podium.observe.context import RunTrace
from podium.plan import build_plan
from podium.redact import redact_url_password
from podium.store.records import RunState, StepState

router = APIRouter(prefix=f"{PREFIX}/runs", include_in_schema=False)
Reader = Annotated[Principal, permit(Permission.RUNS_READ)]
MAX_EVENTS = 5000
TRACE_ENV = "PODIUM_TRACE_URL_TEMPLATE"


@dataclass(frozen=True)
class StepRow:
    step_id: str
    status: str
    attempts: int
    duration_s: float | None
    cost_usd: float
    tokens_in: int
    tokens_out: int
    output: Any
    error: str | None
    error_type: str | None
    traceback: str | None
    fallback_used: bool
    instances: int


@dataclass(frozen=True)
class RunView:
    row: RunState
    summary: RunSummary
    dag: Dag
    timeline: Timeline
    steps: list[StepRow]
    events: list[Event]
    waiting: list[str]  # signals steps wait for now
    in_dlq: bool
    paused: bool
    trace_url: str | None
    inputs: dict[str, Any]
    kinds: tuple[str, ...] = KINDS




def trace_id_of(row: RunState) -> str:
    """The run's trace id, as the tracer derives it (from the traceparent it was started
    under, else from the run id)."""
    return f"{RunTrace.of(row.run_id, row.trace_parent).trace_id:032x}"


def trace_url(row: RunState) -> str | None:
    """The run's trace in a tracing UI, when `PODIUM_TRACE_URL_TEMPLATE` names one, e.g.
    `http://jaeger:16686/trace/{trace_id}` (`{run_id}` works too)."""
    template = os.environ.get(TRACE_ENV, "").strip()
    if not template.startswith(("http://", "https://")):
        return None
    url = template.replace("{trace_id}", trace_id_of(row)).replace("{run_id}", row.run_id)
    return redact_url_password(url)


def _costs(states: list[StepState]) -> dict[str, tuple[float, int, int]]:
    """Per step: cost, tokens in, tokens out; a `for_each` step's own row when it holds the
    total, else its instances summed."""
    own: dict[str, tuple[float, int, int]] = {}
    summed: dict[str, tuple[float, int, int]] = {}
    for s in states:
        if s.index < 0:
            own[s.step_id] = (s.cost_usd, s.tokens_in, s.tokens_out)
        else:
            usd, t_in, t_out = summed.get(s.step_id, (0.0, 0, 0))
            summed[s.step_id] = (usd + s.cost_usd, t_in + s.tokens_in, t_out + s.tokens_out)
    return {sid: own[sid] if any(own.get(sid, ())) else summed.get(sid, (0.0, 0, 0))
            for sid in {*own, *summed}}


def waiting_signals(events: list[Event], summary: RunSummary) -> dict[str, str]:
    """Step -> the signal it waits for now."""
    waiting: dict[str, str] = {}
    for e in events:
        step = e.payload.get("step")
        if e.event_type == "agent.task.waiting" and isinstance(step, str):
            waiting[step] = str(e.payload.get("signal", ""))
        elif e.event_type in ("agent.task.completed", "agent.task.failed") and step in waiting:
            del waiting[step]
    return {s: n for s, n in waiting.items()
            if s in summary.steps and summary.steps[s].status == "running"}


async def run_view(engine: Engine, principal: Principal, run_id: str) -> RunView:
    store = engine.store
    row = await visible_run(store, principal, run_id)
    summary = await engine.summary(run_id)
    workflow = await engine.definition(row.definition_digest)
    plan = build_plan(workflow)
    events = [e for _, e in await store.list_events(run_id, 0, MAX_EVENTS)]
    waiting = waiting_signals(events, summary)
    statuses = {sid: ("waiting" if sid in waiting else s.status)
                for sid, s in summary.steps.items()}
    needs = {sid: step.needs for sid, step in workflow.steps.items()}
    costs = _costs(await store.get_steps(run_id))
    steps = [
        StepRow(sid, statuses[sid], s.attempts, s.duration_s, *costs.get(sid, (0.0, 0, 0)),
                s.output, s.error, s.error_type, s.traceback, s.fallback_used,
                len(s.instances or []))
        for sid, s in summary.steps.items()
    ]
    paused = ("workflow", row.workflow) in set(await store.list_paused())
    return RunView(
        row, summary, layout(plan, needs, statuses),
        timeline(plan.order, events, engine.clock.now()), steps, events,
        sorted(set(waiting.values())), await store.get_dlq(run_id) is not None, paused,
        trace_url(row), engine.redactor.value(row.inputs),  # the engine's secrets, masked
    )


@router.get("/{run_id}", response_class=HTMLResponse)
async def run_page(
    request: Request, run_id: str, engine: EngineDep, principal: Reader
) -> HTMLResponse:
    view = await run_view(engine, principal, run_id)
    return page(request, "run.html", v=view)


@router.get("/{run_id}/panels", response_class=HTMLResponse)
async def run_panels(
    request: Request, run_id: str, engine: EngineDep, principal: Reader
) -> HTMLResponse:
    """Everything below the graph, for the page to refresh in place when the run moves on."""
    view = await run_view(engine, principal, run_id)
    return page(request, "_run_panels.html", v=view)


@router.get("/{run_id}/stream", response_class=StreamingResponse)
async def run_stream(
    run_id: str, engine: EngineDep, streams: StreamsDep, principal: Reader
) -> StreamingResponse:
    """The run's events as SSE (as `GET /v1/events?run_id=`), under the session."""
    await visible_run(engine.store, principal, run_id)
    return StreamingResponse(
        stream_events(engine.store, engine.bus, streams, run_id),
        media_type="text/event-stream", headers=SSE_HEADERS,
    )
