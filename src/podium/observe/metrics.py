"""Prometheus metrics of one engine: counters and histograms fed by its committed changes.

`Metrics.attach(engine)` registers the commit observer and the scrape-time state collector.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    start_http_server,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from podium.clock import Clock
from podium.engine.engine import Engine
from podium.engine.observers import Commit
from podium.engine.runtime import RunRuntime
from podium.engine.transitions import Transition
from podium.events import Event
from podium.model.status import RUN_FINAL
from podium.observe.labels import OTHER, BoundedLabel
from podium.observe.scaling import ScalingPolicy
from podium.observe.state import StateCollector
from podium.store.spend import SpendRow

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_WORKFLOWS = 200  # distinct workflow label values; later ones are `other`
MAX_STEPS = 2000  # distinct (workflow, step) pairs
MAX_REMEMBERED_RUNS = 10_000  # queued runs whose runtime is kept for their first transition
UNKNOWN = "unknown"  # a run this engine no longer holds (its queued cancel, a lost lease)

_RUN_FINAL = frozenset(s.value for s in RUN_FINAL)
_STEP_COUNTED = frozenset({"succeeded", "failed", "cancelled", "skipped"})
RUN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 14400)
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 14400)
DECISION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class RunLookup(Protocol):
    def held(self, run_id: str) -> RunRuntime | None:
        """The runtime of a run the engine runs or queues, else None."""


class CommitMetrics:
    """The engine observer: every counter and histogram here comes from committed events,
    status transitions and spend rows, so a new transition is counted without new calls."""

    def __init__(self, registry: CollectorRegistry, lookup: RunLookup, clock: Clock) -> None:
        self._lookup = lookup
        self._clock = clock
        self.workflows = BoundedLabel(MAX_WORKFLOWS)
        self._steps = BoundedLabel(MAX_STEPS)
        self._queued: OrderedDict[str, RunRuntime] = OrderedDict()
        r = registry
        self.submitted = Counter(
            "podium_runs_submitted", "Runs queued", ["workflow", "priority"], registry=r
        )
        self.started = Counter("podium_runs_started", "Runs started", ["workflow"], registry=r)
        self.finished = Counter(
            "podium_runs", "Runs finished, by final status", ["workflow", "status"], registry=r
        )
        self.run_seconds = Histogram(
            "podium_run_duration_seconds", "Run time from start to end", ["workflow", "status"],
            buckets=RUN_BUCKETS, registry=r,
        )
        self.steps = Counter(
            "podium_steps", "Steps ended, by final status", ["workflow", "step", "kind", "status"],
            registry=r,
        )
        self.step_seconds = Histogram(
            "podium_step_duration_seconds", "Step time, all attempts and backoff included",
            ["workflow", "kind", "status"], buckets=STEP_BUCKETS, registry=r,
        )
        self.attempts = Counter(
            "podium_step_attempts", "Step attempts started", ["workflow", "kind"], registry=r
        )
        self.retries = Counter(
            "podium_step_retries", "Failed attempts retried", ["workflow", "kind"], registry=r
        )
        self.fallbacks = Counter(
            "podium_step_fallbacks", "Steps that fell back", ["workflow", "kind"], registry=r
        )
        self.compensations = Counter(
            "podium_compensations", "Saga compensations, by outcome", ["workflow", "outcome"],
            registry=r,
        )
        self.queue_wait = Histogram(
            "podium_queue_wait_seconds", "Time a run waited queued before it started",
            ["priority"], buckets=WAIT_BUCKETS, registry=r,
        )
        self.decision = Histogram(
            "podium_decision_latency_seconds",
            "From an input reaching the engine to its decision being committed",
            buckets=DECISION_BUCKETS, registry=r,
        )
        self.budget_blocked = Counter(
            "podium_budget_blocked_calls", "Calls a budget refused or held back",
            ["workflow", "action"], registry=r,
        )
        self.circuit_changes = Counter(
            "podium_circuit_transitions", "Circuit breakers opening, half-opening, closing",
            ["to"], registry=r,
        )
        self.tokens = Counter(
            "podium_llm_tokens", "Tokens used, from the spend ledger",
            ["workflow", "model", "type"], registry=r,
        )
        self.cost = Counter(
            "podium_cost_usd", "Money spent, from the spend ledger", ["workflow", "model"],
            registry=r,
        )

    # -- the observer ----------------------------------------------------------------------

    def committed(self, commit: Commit) -> None:
        for event in commit.events:
            self._event(event)
        self._transitions(commit.transitions)
        for row in commit.spend:
            self._spend(row)

    def _runtime(self, run_id: str) -> RunRuntime | None:
        return self._lookup.held(run_id) or self._queued.get(run_id)

    def _workflow(self, rt: RunRuntime | None) -> str:
        return self.workflows(rt.row.workflow) if rt is not None else UNKNOWN

    def _transitions(self, transitions: Sequence[Transition]) -> None:
        now, decided = self._clock.now(), set()
        for t in transitions:
            rt = self._runtime(t.run_id)
            if t.step_id is None:
                self._run_moved(t, rt)
            elif t.index < 0 and t.target in _STEP_COUNTED:
                workflow = self._workflow(rt)
                self.steps.labels(
                    workflow, self._step(workflow, t.step_id), _kind(rt, t.step_id), t.target
                ).inc()
            if (t.run_id, t.at) not in decided:  # one decision moves many rows at once
                decided.add((t.run_id, t.at))
                self.decision.observe(max(0.0, now - t.at))

    def _run_moved(self, t: Transition, rt: RunRuntime | None) -> None:
        workflow = self._workflow(rt)
        if t.source == "queued":
            self._queued.pop(t.run_id, None)
        if t.target == "running" and t.source == "queued":
            self.started.labels(workflow).inc()
            if rt is not None:
                waited = max(0.0, t.at - rt.row.created_at)
                self.queue_wait.labels(rt.row.priority).observe(waited)
        elif t.target in _RUN_FINAL:
            self.finished.labels(workflow, t.target).inc()
            if rt is not None and rt.row.started_at is not None:
                took = max(0.0, t.at - rt.row.started_at)
                self.run_seconds.labels(workflow, t.target).observe(took)

    def _step(self, workflow: str, step_id: str) -> str:
        return step_id if self._steps(f"{workflow}\x00{step_id}") != OTHER else OTHER

    def _event(self, event: Event) -> None:
        kind = event.event_type
        if not kind.startswith(("agent.", "run.queued", "system.circuit.")):
            return
        payload = event.payload
        if kind == "run.queued":
            self._remember(event.correlation_id)
            workflow = self.workflows(str(payload.get("workflow", UNKNOWN)))
            self.submitted.labels(workflow, str(payload.get("priority", "normal"))).inc()
            return
        if kind.startswith("system.circuit."):
            self.circuit_changes.labels(kind.removeprefix("system.circuit.")).inc()
            return
        self._step_event(kind, payload, self._runtime(event.correlation_id))

    def _step_event(self, kind: str, payload: dict[str, Any], rt: RunRuntime | None) -> None:
        workflow = self._workflow(rt)
        step_kind = _kind(rt, str(payload.get("step", "")))
        if kind == "agent.task.started" and "attempt" in payload:
            self.attempts.labels(workflow, step_kind).inc()
        elif kind == "agent.task.retrying":
            self.retries.labels(workflow, step_kind).inc()
        elif kind == "agent.task.fallback":
            self.fallbacks.labels(workflow, step_kind).inc()
            self._budget_refusal(workflow, payload)
        elif kind in ("agent.task.completed", "agent.task.failed"):
            if kind == "agent.task.failed":
                self._budget_refusal(workflow, payload)
            if payload.get("index", -1) < 0:
                status = "succeeded" if kind == "agent.task.completed" else "failed"
                seconds = float(payload.get("duration_s") or 0.0)
                self.step_seconds.labels(workflow, step_kind, status).observe(seconds)
        elif kind == "agent.task.throttled" and "scope" in payload:  # a budget holds it back
            self.budget_blocked.labels(workflow, "throttled").inc()
        elif kind == "agent.task.compensated":
            self.compensations.labels(workflow, "ok").inc()
        elif kind == "agent.task.compensation_failed":
            self.compensations.labels(workflow, "failed").inc()

    def _budget_refusal(self, workflow: str, payload: dict[str, Any]) -> None:
        # The refused call's own error; a for_each parent's says "instance N failed: ...".
        if str(payload.get("error") or "").startswith("budget_exceeded"):
            self.budget_blocked.labels(workflow, "refused").inc()

    def _remember(self, run_id: str) -> None:
        """A queued run's runtime, for a transition after the engine let go of it (a run
        cancelled while queued leaves the queue before its cancel commits)."""
        rt = self._lookup.held(run_id)
        if rt is None:
            return
        self._queued[run_id] = rt
        while len(self._queued) > MAX_REMEMBERED_RUNS:
            self._queued.popitem(last=False)

    def _spend(self, row: SpendRow) -> None:
        workflow, model = self.workflows(row.workflow), row.model or "none"
        if row.tokens_in:
            self.tokens.labels(workflow, model, "input").inc(row.tokens_in)
        if row.tokens_out:
            self.tokens.labels(workflow, model, "output").inc(row.tokens_out)
        if row.usd:
            self.cost.labels(workflow, model).inc(row.usd)


def _kind(rt: RunRuntime | None, step_id: str) -> str:
    if rt is None:
        return UNKNOWN
    try:
        return rt.compiled.step(step_id).action.kind
    except KeyError:
        return UNKNOWN


@dataclass(eq=False)
class Metrics:
    """Everything `/metrics` shows for one engine, in a registry of its own."""

    registry: CollectorRegistry
    commits: CommitMetrics
    state: StateCollector

    @classmethod
    def attach(cls, engine: Engine, *, cache_s: float = 1.0) -> Metrics:
        """The engine's metrics, made and registered on first use (one set per engine).
        Call it on the engine's event loop."""
        known = _ATTACHED.get(engine)
        if known is not None:
            return known
        # No `_created` twin of every counter: noise to a scraper, and a name of its own.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        registry = CollectorRegistry()
        for extra in (ProcessCollector, PlatformCollector, GCCollector):
            extra(registry=registry)
        config = engine.settings.control.metrics
        policy = ScalingPolicy(config.window, config.drain, config.slots_per_worker)
        state = StateCollector(engine.store, engine.control, engine.clock, policy, cache_s=cache_s)
        registry.register(state)
        metrics = cls(registry, CommitMetrics(registry, engine, engine.clock), state)
        engine.observers.add(metrics.commits)
        _ATTACHED[engine] = metrics
        return metrics

    async def exposition(self) -> bytes:
        """The text format, the store's state read at most once per cache period."""
        await self.state.refresh()
        return generate_latest(self.registry)

    def serve(self, host: str, port: int) -> MetricsServer:
        """prometheus_client's own HTTP server, on a thread: for `podium worker`."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        return MetricsServer(server, thread)


_ATTACHED: weakref.WeakKeyDictionary[Engine, Metrics] = weakref.WeakKeyDictionary()


@dataclass(eq=False)
class MetricsServer:
    server: Any  # wsgiref's server: shutdown() stops serve_forever
    thread: Any

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
