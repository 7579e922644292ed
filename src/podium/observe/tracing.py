"""OpenTelemetry traces of runs, built from the engine's committed events (its observer seam).

A run is one trace: a root span `invoke_workflow {workflow}`, a span per step attempt
(`chat {model}` for `llm`, after the GenAI semantic conventions; `invoke_agent {step}` for an
agent loop, with a `chat {model}` span per turn under it; `execute_tool {step}` for the other
kinds), a span for time spent queued and for each wait on a guard (a slot, a rate limit, a
budget, a circuit's trial); retries, fallbacks, compensations, circuits, throttles, pauses and
signal waits are span events. Spans are made when their end is committed, with the start and
end times the events recorded, so tracing adds no work to a step itself. They leave as plain
tuples for a sink (observe/sinks.py): the span export process for OTLP (observe/export.py),
which encodes and sends them away from the event loop. A sampler (observe/sampling.py) decides
once per run whether it is traced at all.

Ids are deterministic, so that any process computes the same ones without asking another:
- the trace id is the trace id of the span the run was started under (`traceparent` on
  `POST /v1/runs`, `TRACEPARENT` for `podium run`, a parent run's step), kept with the run
  (`runs.trace_parent`); a run started under no span gets one derived from its run id;
- the root span's id is derived from the run id, an attempt's span id from
  (run, step, instance, attempt, role: the step's action, its fallback, its compensation).
So a step that another worker runs, or that runs again after a crash, lands in the same trace
under the same root, and the `traceparent` a step sends (`StepContext.traceparent`) names its
attempt's span before that span is exported.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

from podium.engine.engine import Engine
from podium.engine.observers import Commit
from podium.errors import PodiumError
from podium.events import Event
from podium.observe.context import RunTrace, attempt_span_id, derived_id, traceparent_of
from podium.observe.sampling import Sampler
from podium.observe.sinks import (
    KIND_CLIENT,
    KIND_INTERNAL,
    Fanout,
    ProcessorSink,
    SpanEvent,
    SpanSink,
)
from podium.store.records import RunState

_MAX_RUNS = 100_000  # runs whose spans are open at once (a lost run's state is dropped past it)
_MAX_EVENTS = 64  # span events kept per span
_OK_RUN = frozenset({"succeeded", "degraded"})
_TOOL_TYPES = {"python": "function", "http": "extension", "n8n": "extension"}
_PLACING = frozenset({"run.started", "run.resumed", "run.completed"})


# -- what the observer keeps between events -----------------------------------------------------

@dataclass(slots=True)
class _Attempt:
    step: str
    index: int
    attempt: int
    role: str
    start_ns: int
    kind: str = ""
    provider: str | None = None
    model: str | None = None
    turns: int = 0  # agent-loop turns answered in this attempt
    events: list[SpanEvent] = field(default_factory=list)


@dataclass(slots=True)
class _Run:
    run_id: str
    trace: RunTrace
    workflow: str = ""
    queued_at: float | None = None
    events: list[SpanEvent] = field(default_factory=list)
    attempts: dict[tuple[str, int], _Attempt] = field(default_factory=dict)


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def _add(events: list[SpanEvent], name: str, attributes: dict[str, Any], ts: float) -> None:
    if len(events) < _MAX_EVENTS:
        events.append((name, {k: v for k, v in attributes.items() if v is not None}, _ns(ts)))


# -- the observer ------------------------------------------------------------------------------


_OBSERVERS: weakref.WeakSet[TraceObserver] = weakref.WeakSet()


def log_ids(
    run_id: str, step_id: Any = None, index: Any = -1, attempt: Any = None
) -> dict[str, str]:
    """`trace_id` and `span_id` for a log line about a run (an attempt's span when the line
    names its step and attempt, else the run's root span)."""
    trace = next((o.trace_of(run_id) for o in _OBSERVERS if o.trace_of(run_id)), None)
    trace = trace or RunTrace.of(run_id, None)
    span_id = trace.root_span_id
    if isinstance(step_id, str) and isinstance(attempt, int):
        span_id = attempt_span_id(run_id, step_id, index if isinstance(index, int) else -1, attempt)
    return {"trace_id": f"{trace.trace_id:032x}", "span_id": f"{span_id:016x}"}


class TraceObserver:
    """Turns committed events into spans; also gives each attempt its `traceparent`."""

    def __init__(self, sink: SpanSink, sampler: Sampler | None = None) -> None:
        # Spans are handed to the sink whole (ids, times, events known) as plain tuples: no
        # tracer, no context, no SDK object per span. The sampler decides once per run.
        self._sink = sink
        self._sampler = sampler or Sampler()
        self._runs: dict[str, _Run] = {}
        _OBSERVERS.add(self)
        self._handlers: dict[str, Callable[[_Run, Event, dict[str, Any]], None]] = {
            "run.started": self._run_started,
            "run.resumed": self._run_resumed,
            "run.stopping": self._root_event("stopping"),
            "run.completed": self._run_completed,
            "agent.task.started": self._attempt_started,
            "agent.task.retrying": self._retrying,
            "agent.task.fallback": self._fallback,
            "agent.task.completed": self._completed,
            "agent.task.failed": self._failed,
            "agent.task.cancelled": self._cancelled,
            "agent.task.waited": self._waited,
            "agent.task.throttled": self._step_event("budget.throttled"),
            "agent.task.waiting": self._step_event("signal.wait"),
            "agent.task.held": self._root_event("paused"),
            "agent.task.compensating": self._compensating,
            "agent.task.compensated": self._compensation_ended,
            "agent.task.compensation_failed": self._compensation_ended,
            "agent.task.turn": self._turn,
            "system.cost.budget.warning": self._root_event("budget.warning"),
            "system.deadlock.detected": self._root_event("deadlock.detected"),
        }

    def trace_of(self, run_id: str) -> RunTrace | None:
        """The trace of a run whose spans are open here."""
        run = self._runs.get(run_id)
        return None if run is None else run.trace

    # -- TraceContexts (engine.observers) ------------------------------------------------------

    def traceparent(self, run: RunState, step_id: str, index: int, attempt: int, role: str) -> str:
        trace = self.trace_of(run.run_id) or self._trace(run.run_id, run.trace_parent)
        return traceparent_of(trace, attempt_span_id(run.run_id, step_id, index, attempt, role))

    def _trace(self, run_id: str, trace_parent: str | None) -> RunTrace:
        """The run's trace, its sampled flag as the sampler decides."""
        trace = RunTrace.of(run_id, trace_parent)
        given = trace.sampled if trace.parent_span_id is not None else None
        sampled = self._sampler.sampled(trace.trace_id, given)
        return trace if sampled == trace.sampled else replace(trace, sampled=sampled)

    # -- Observer -------------------------------------------------------------------------------

    def committed(self, commit: Commit) -> None:
        handlers, runs = self._handlers, self._runs
        for event in commit.events:
            if not event.correlation_id:  # a system event of no run
                continue
            handler = handlers.get(event.event_type)
            if handler is None:
                if event.event_type.startswith("system.circuit."):
                    handler = self._root_event(event.event_type.removeprefix("system."))
                else:
                    continue
            run = runs.get(event.correlation_id) or self._run(event)
            if run.trace.sampled or event.event_type in _PLACING:  # an unsampled run: no work
                handler(run, event, event.payload)

    def _run(self, event: Event) -> _Run:
        run_id = event.correlation_id
        run = self._runs.get(run_id)
        if run is None:
            facts = event.payload
            trace = self._trace(run_id, facts.get("trace_parent"))
            run = _Run(run_id, trace, facts.get("workflow") or "", facts.get("queued_at"))
            if len(self._runs) >= _MAX_RUNS:  # runs another engine took over never complete here
                self._runs.pop(next(iter(self._runs)))
            self._runs[run_id] = run
        return run

    # -- runs -----------------------------------------------------------------------------------

    def _run_started(self, run: _Run, event: Event, facts: dict[str, Any]) -> None:
        self._place(run, facts)
        if run.queued_at is not None and event.timestamp - run.queued_at >= 0.001:
            self._span(
                run, "queued", run.trace.root_span_id, derived_id(f"queue\x1f{event.event_id}", 64),
                _ns(run.queued_at), _ns(event.timestamp), {"podium.run_id": run.run_id},
            )

    def _run_resumed(self, run: _Run, event: Event, facts: dict[str, Any]) -> None:
        self._place(run, facts)
        run.attempts.clear()  # attempts in flight were lost with the engine that ran them
        _add(run.events, "resumed", {"podium.owner": facts.get("owner")}, event.timestamp)

    def _place(self, run: _Run, facts: dict[str, Any]) -> None:
        if "trace_parent" in facts:  # else the trace derived from the run id stands
            run.trace = self._trace(run.run_id, facts.get("trace_parent"))
        run.workflow = facts.get("workflow") or run.workflow
        run.queued_at = facts.get("queued_at", run.queued_at)

    def _run_completed(self, run: _Run, event: Event, facts: dict[str, Any]) -> None:
        self._place(run, facts)
        status = facts.get("status")
        end = event.timestamp
        start = run.queued_at if run.queued_at is not None else end - (facts.get("duration_s") or 0)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_workflow",
            "podium.run_id": run.run_id,
            "podium.workflow": run.workflow,
            "podium.status": status,
        }
        error = None
        if status not in _OK_RUN:
            attributes["error.type"] = status
            error = facts.get("error") or status
        parent = run.trace.parent_span_id
        self._span(
            run, f"invoke_workflow {run.workflow}".strip(), parent or 0, run.trace.root_span_id,
            _ns(min(start, end)), _ns(end), attributes, run.events, error,
            remote=parent is not None,
        )
        self._runs.pop(run.run_id, None)

    def _root_event(self, name: str) -> Callable[[_Run, Event, dict[str, Any]], None]:
        def handle(run: _Run, event: Event, payload: dict[str, Any]) -> None:
            _add(run.events, name, _flat(payload), event.timestamp)

        return handle

    # -- attempts -------------------------------------------------------------------------------

    def _attempt_started(self, run: _Run, event: Event, payload: dict[str, Any]) -> None:
        attempt = payload.get("attempt")
        # A for_each step's start (its instances are the attempts), or an attempt let through
        # by a limit after a wait: its span began at its first start, the wait is its own span.
        if attempt is None or payload.get("after_waiting"):
            return
        key = (payload["step"], payload.get("index", -1))
        run.attempts[key] = _Attempt(
            key[0], key[1], attempt, "", _ns(event.timestamp), payload.get("kind", ""),
            payload.get("provider"), payload.get("model"),
        )

    def _open(self, run: _Run, payload: dict[str, Any]) -> _Attempt | None:
        index = payload.get("index")  # an agent turn's is None outside a for_each
        return run.attempts.get((payload.get("step", ""), index if isinstance(index, int) else -1))

    def _retrying(self, run: _Run, event: Event, payload: dict[str, Any]) -> None:
        attempt = run.attempts.pop((payload["step"], payload.get("index", -1)), None)
        if attempt is not None:
            _add(attempt.events, "retry", {"podium.retry_in_s": payload.get("delay_s")},
                 event.timestamp)
            self._end(run, attempt, event, payload, error=True)

    def _fallback(self, run: _Run, event: Event, payload: dict[str, Any]) -> None:
        key = (payload["step"], payload.get("index", -1))
        attempt = run.attempts.pop(key, None)
        number = payload.get("attempt") or 1
        if attempt is not None:
            number = attempt.attempt
            _add(attempt.events, "fallback", {}, event.timestamp)
            self._end(run, attempt, event, payload, error=True)
        run.attempts[key] = _Attempt(
            key[0], key[1], number, "fallback", _ns(event.timestamp), payload.get("kind", ""),
            payload.get("provider"), payload.get("model"),
        )

    def _completed(self, run: _Run, event: Event, payload: dict[str, Any]) -> None:
        attempt = run.attempts.pop((payload["step"], payload.get("index", -1)), None)
        if attempt is not None:
            self._end(run, attempt, event, payload, error=False)

    def _failed(self, run: _Run, event: Event, payload: dict[str, Any]) -> None:
        attempt = run.attempts.pop((payload["step"], payload.get("index", -1)), None)
        if attempt is not None:
            self._end(run, attempt, event, payload, error=True)
        else:  # failed before any attempt (a bad `when` or `for_each`), or a for_each step
            _add(run.events, "step.failed", _flat(payload), event.timestamp)

    def _cancelled(self, run: _Run, event: Event, payload: dict[str, Any]) -> None:
        attempt = run.attempts.pop((payload["step"], payload.get("index", -1)), None)
        if attempt is not None:
            _add(attempt.events, "cancelled", {"podium.reason": payload.get("reason")},
                 event.timestamp)
            self._end(run, attempt, event, payload, error=False)

    def _waited(self, run: _Run, event: Event, payload: dict[str, Any]) -> None:
        attempt = self._open(run, payload)
        role = attempt.role if attempt is not None else ""
        parent = attempt_span_id(
            run.run_id, payload["step"], payload.get("index", -1), payload["attempt"], role
        )
        guard = payload.get("guard", "guard")
        end = event.timestamp
        start = end - float(payload.get("waited_s") or 0.0)
        if attempt is not None:
            start = max(start, attempt.start_ns / 1e9)
        attributes = {
            **self._step_attributes(run, payload["step"], payload.get("index", -1),
                                    payload["attempt"]),
            "podium.guard": guard,
        }
        self._span(run, f"wait {guard}", parent, derived_id(f"wait\x1f{event.event_id}", 64),
                   _ns(start), _ns(end), attributes)

    def _step_event(self, name: str) -> Callable[[_Run, Event, dict[str, Any]], None]:
        def handle(run: _Run, event: Event, payload: dict[str, Any]) -> None:
            attempt = self._open(run, payload) or next(
                (a for a in run.attempts.values() if a.step == payload.get("step")), None
            )
            label = "slot.wait" if payload.get("for") == "slot" else name
            _add(run.events if attempt is None else attempt.events, label, _flat(payload),
                 event.timestamp)

        return handle

    def _compensating(self, run: _Run, event: Event, payload: dict[str, Any]) -> None:
        key = (payload["step"], payload.get("index", -1))
        run.attempts[key] = _Attempt(key[0], key[1], 1, "compensate", _ns(event.timestamp))

    def _compensation_ended(self, run: _Run, event: Event, payload: dict[str, Any]) -> None:
        failed = event.event_type.endswith("failed")
        _add(run.events, "compensation_failed" if failed else "compensated", _flat(payload),
             event.timestamp)
        attempt = run.attempts.pop((payload["step"], payload.get("index", -1)), None)
        if attempt is not None and attempt.role == "compensate":
            self._end(run, attempt, event, payload, error=failed)

    def _step_attributes(
        self, run: _Run, step: str, index: int, attempt: int
    ) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            "podium.run_id": run.run_id, "podium.step_id": step, "podium.attempt": attempt,
            "podium.workflow": run.workflow,
        }
        if index >= 0:
            attributes["podium.index"] = index
        return attributes

    def _end(
        self, run: _Run, attempt: _Attempt, event: Event, payload: dict[str, Any], *, error: bool
    ) -> None:
        attributes = self._step_attributes(run, attempt.step, attempt.index, attempt.attempt)
        if attempt.role:
            attributes["podium.role"] = attempt.role
        attributes["podium.kind"] = attempt.kind
        if attempt.turns:  # an agent loop: its model calls are the turns' `chat` spans
            name, kind = self._agent(attempt, payload, attributes), KIND_INTERNAL
        elif attempt.kind == "llm":
            name, kind = self._llm(attempt, payload, attributes), KIND_CLIENT
        elif attempt.role == "compensate":
            name, kind = f"compensate {attempt.step}", KIND_INTERNAL
        else:
            name, kind = f"execute_tool {attempt.step}", KIND_INTERNAL
            attributes["gen_ai.operation.name"] = "execute_tool"
            attributes["gen_ai.tool.name"] = attempt.step
            tool_type = _TOOL_TYPES.get(attempt.kind)
            if tool_type is not None:
                attributes["gen_ai.tool.type"] = tool_type
        description = None
        if error:
            error_type = payload.get("error_type") or "_OTHER"
            description = payload.get("error") or error_type
            attributes["error.type"] = error_type
            _add(attempt.events, "exception", {
                "exception.type": error_type, "exception.message": description,
                "exception.stacktrace": payload.get("traceback"),
            }, event.timestamp)
        span_id = attempt_span_id(
            run.run_id, attempt.step, attempt.index, attempt.attempt, attempt.role
        )
        self._span(run, name, run.trace.root_span_id, span_id, attempt.start_ns,
                   _ns(event.timestamp), attributes, attempt.events, description, kind=kind)

    def _llm(self, attempt: _Attempt, payload: dict[str, Any], attributes: dict[str, Any]) -> str:
        model = payload.get("model") or attempt.model
        attributes["gen_ai.operation.name"] = "chat"
        _genai(attributes, attempt, model, payload.get("response_model"), payload)
        return f"chat {model}" if model else "chat"

    def _agent(
        self, attempt: _Attempt, payload: dict[str, Any], attributes: dict[str, Any]
    ) -> str:
        attributes["gen_ai.operation.name"] = "invoke_agent"
        attributes["gen_ai.agent.name"] = attempt.step
        attributes["podium.turns"] = attempt.turns
        model = payload.get("model") or attempt.model
        _genai(attributes, attempt, model, payload.get("response_model"), payload)
        return f"invoke_agent {attempt.step}"

    def _turn(self, run: _Run, event: Event, payload: dict[str, Any]) -> None:
        """A model turn of an agent loop: a `chat` span under its attempt's span."""
        attempt = self._open(run, payload)
        if attempt is None:
            return
        attempt.turns += 1
        end = event.timestamp
        start = max(end - float(payload.get("latency_s") or 0.0), attempt.start_ns / 1e9)
        model = attempt.model or payload.get("model")
        attributes = self._step_attributes(run, attempt.step, attempt.index, attempt.attempt)
        attributes["gen_ai.operation.name"] = "chat"
        _genai(attributes, attempt, model, payload.get("model"), payload)
        attributes["podium.turn"] = payload.get("turn")
        calls = payload.get("tool_calls")
        if isinstance(calls, list) and calls:
            attributes["podium.tool_calls"] = [str(c.get("name")) for c in calls
                                               if isinstance(c, dict)]
        parent = attempt_span_id(
            run.run_id, attempt.step, attempt.index, attempt.attempt, attempt.role
        )
        span_id = derived_id(f"turn\x1f{parent}\x1f{payload.get('turn')}", 64)
        self._span(run, f"chat {model}" if model else "chat", parent, span_id, _ns(start),
                   _ns(end), attributes, kind=KIND_CLIENT)

    # -- making a span ----------------------------------------------------------------------------

    def _span(
        self, run: _Run, name: str, parent_id: int, span_id: int, start_ns: int, end_ns: int,
        attributes: dict[str, Any], events: list[SpanEvent] | None = None,
        error: str | None = None, *, kind: int = KIND_INTERNAL, remote: bool = False,
    ) -> None:
        """Hands a finished span to the sink (`parent_id` 0: a root; `remote`: the parent is
        the span the run was started under, in another process)."""
        trace = run.trace
        if not trace.sampled:
            return
        if None in attributes.values():
            attributes = {k: v for k, v in attributes.items() if v is not None}
        self._sink.emit((
            trace.trace_id, span_id, parent_id, remote, trace.flags, name, kind, start_ns,
            max(end_ns, start_ns), attributes, events or [],
            None if error is None else error[:1000],
        ))


def _genai(
    attributes: dict[str, Any], attempt: _Attempt, model: str | None,
    response_model: str | None, payload: dict[str, Any],
) -> None:
    """The GenAI attributes of a model call (or of a loop's calls, summed)."""
    attributes["gen_ai.provider.name"] = attempt.provider or "openai"
    if model:
        attributes["gen_ai.request.model"] = model
    if response_model:
        attributes["gen_ai.response.model"] = response_model
    if "tokens_in" in payload:
        attributes["gen_ai.usage.input_tokens"] = payload["tokens_in"]
        attributes["gen_ai.usage.output_tokens"] = payload.get("tokens_out", 0)
    if payload.get("finish_reason"):
        attributes["gen_ai.response.finish_reasons"] = [payload["finish_reason"]]


def _flat(payload: dict[str, Any]) -> dict[str, Any]:
    """A payload as span event attributes: scalars kept (prefixed `podium.`), the rest dropped."""
    return {
        f"podium.{key}": value for key, value in payload.items()
        if isinstance(value, str | bool | int | float)
    }


# -- set-up from the environment -----------------------------------------------------------


def tracing_configured(environ: Mapping[str, str] | None = None) -> bool:
    """Do the `OTEL_*` variables ask for traces? (An exporter named, or an OTLP endpoint.)"""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER")
    if exporter is not None:
        return exporter.strip().lower() not in ("", "none")
    return bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def default_resource(environ: Mapping[str, str] | None = None) -> Resource:
    """The process's resource; service.name defaults to `podium` (`OTEL_SERVICE_NAME` and
    `OTEL_RESOURCE_ATTRIBUTES` win)."""
    resource = Resource.create()
    service = (environ or {}).get("OTEL_SERVICE_NAME")
    if service:  # variables given to from_env, not the process's own
        resource = resource.merge(Resource({"service.name": service}))
    elif str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": "podium"}))
    return resource


def _check_protocol(env: Mapping[str, str]) -> None:
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if protocol != "http/protobuf":
        raise PodiumError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL is {protocol!r}; podium exports OTLP over http/protobuf"
        )


def _sink(name: str, env: Mapping[str, str], resource: Resource) -> SpanSink:
    if name == "console":
        return ProcessorSink(BatchSpanProcessor(ConsoleSpanExporter()), resource)
    # Imported here: a process that does not export never starts the export process.
    from podium.observe.export import ExportProcess

    try:
        return ExportProcess(dict(resource.attributes), env)
    except OSError as exc:
        raise PodiumError(f"the span export process could not start: {exc}") from None


class Tracing:
    """Traces for one process: where spans go (OTLP: the span export process; an SDK span
    processor), and the observer each engine registers. `shutdown` exports what is left."""

    def __init__(
        self, sink: SpanSink | SpanProcessor, resource: Resource | None = None,
        sampler: Sampler | None = None,
    ) -> None:
        if isinstance(sink, SpanProcessor):
            sink = ProcessorSink(sink, resource or default_resource())
        self.sink = sink
        self.observer = TraceObserver(sink, sampler)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Tracing | None:
        """Tracing as the `OTEL_*` variables configure it; None when they ask for none."""
        env = os.environ if environ is None else environ
        if not tracing_configured(env):
            return None
        sampler = Sampler.from_env(env)
        names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
        names = [name for name in names if name and name != "none"]
        for name in names:  # every name checked before any process starts
            if name not in ("otlp", "console"):
                raise PodiumError(
                    f"OTEL_TRACES_EXPORTER names {name!r}; podium exports to otlp or console"
                )
            if name == "otlp":
                _check_protocol(env)
        resource = default_resource(env)
        sinks = [_sink(name, env, resource) for name in names]
        return cls(sinks[0] if len(sinks) == 1 else Fanout(*sinks), resource, sampler)

    def install(self, engine: Engine) -> None:
        """Observes `engine`'s commits and gives its steps their attempts' trace context."""
        engine.observers.add(self.observer)
        engine.trace_attempts(self.observer)

    def ready(self, timeout_s: float = 10.0) -> bool:
        """Waits until spans can be exported; a process need not (spans queue meanwhile)."""
        return self.sink.ready(timeout_s)

    def shutdown(self) -> None:
        self.sink.shutdown()
