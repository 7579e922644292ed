"""Prometheus metrics of one engine: counters and histograms fed by its committed changes.

`Metrics.attach(engine)` registers the commit observer and the scrape-time state collector.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    disable_created_metrics,
    generate_latest,
    start_http_server,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.metrics_core import Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

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
from podium.observe.tally import Spread, Tally
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


class CommitMetrics(Collector):
    """The engine observer: every counter and histogram here comes from committed events,
    status transitions and spend rows, so a new transition is counted without new calls.
    It is also the collector that shows them (tally.py: plain dicts on the hot path)."""

    def __init__(self, lookup: RunLookup, clock: Clock) -> None:
        self._lookup = lookup
        self._clock = clock
        self.workflows = BoundedLabel(MAX_WORKFLOWS)
        self._steps = BoundedLabel(MAX_STEPS)
        self._queued: OrderedDict[str, RunRuntime] = OrderedDict()
        self.submitted = Tally("podium_runs_submitted", "Runs queued", ["workflow", "priority"])
        self.started = Tally("podium_runs_started", "Runs started", ["workflow"])
        self.finished = Tally(
            "podium_runs", "Runs finished, by final status", ["workflow", "status"]
        )
        self.run_seconds = Spread(
            "podium_run_duration_seconds", "Run time from start to end", ["workflow", "status"],
            RUN_BUCKETS,
        )
        self.steps = Tally(
            "podium_steps", "Steps ended, by final status", ["workflow", "step", "kind", "status"]
        )
        self.step_seconds = Spread(
            "podium_step_duration_seconds", "Step time, all attempts and backoff included",
            ["workflow", "kind", "status"], STEP_BUCKETS,
        )
        self.attempts = Tally("podium_step_attempts", "Step attempts started", ["workflow", "kind"])
        self.retries = Tally("podium_step_retries", "Failed attempts retried", ["workflow", "kind"])
        self.fallbacks = Tally(
            "podium_step_fallbacks", "Steps that fell back", ["workflow", "kind"]
        )
        self.compensations = Tally(
            "podium_compensations", "Saga compensations, by outcome", ["workflow", "outcome"]
        )
        self.queue_wait = Spread(
            "podium_queue_wait_seconds", "Time a run waited queued before it started",
            ["priority"], WAIT_BUCKETS,
        )
        self.decision = Spread(
            "podium_decision_latency_seconds",
            "From an input reaching the engine to its decision being committed", [],
            DECISION_BUCKETS,
        )
        self.budget_blocked = Tally(
            "podium_budget_blocked_calls", "Calls a budget refused or held back",
            ["workflow", "action"],
        )
        self.circuit_changes = Tally(
            "podium_circuit_transitions", "Circuit breakers opening, half-opening, closing",
            ["to"],
        )
        self.tokens = Tally(
            "podium_llm_tokens", "Tokens used, from the spend ledger", ["workflow", "model", "type"]
        )
        self.cost = Tally(
            "podium_cost_usd", "Money spent, from the spend ledger", ["workflow", "model"]
        )
        self._all: tuple[Tally | Spread, ...] = tuple(
            v for v in vars(self).values() if isinstance(v, Tally | Spread)
        )

    def collect(self) -> Iterator[Metric]:
        for metric in self._all:
            yield metric.family()

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
                step = self._step(workflow, t.step_id)
                self.steps.inc((workflow, step, _kind(rt, t.step_id), t.target))
            if (t.run_id, t.at) not in decided:  # one decision moves many rows at once
                decided.add((t.run_id, t.at))
                self.decision.observe((), max(0.0, now - t.at))

    def _run_moved(self, t: Transition, rt: RunRuntime | None) -> None:
        workflow = self._workflow(rt)
        if t.source == "queued":
            self._queued.pop(t.run_id, None)
        if t.target == "running" and t.source == "queued":
            self.started.inc((workflow,))
            if rt is not None:
                waited = max(0.0, t.at - rt.row.created_at)
                self.queue_wait.observe((rt.row.priority,), waited)
        elif t.target in _RUN_FINAL:
            self.finished.inc((workflow, t.target))
            if rt is not None and rt.row.started_at is not None:
                took = max(0.0, t.at - rt.row.started_at)
                self.run_seconds.observe((workflow, t.target), took)

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
            self.submitted.inc((workflow, str(payload.get("priority", "normal"))))
            return
        if kind.startswith("system.circuit."):
            self.circuit_changes.inc((kind.removeprefix("system.circuit."),))
            return
        self._step_event(kind, payload, self._runtime(event.correlation_id))

    def _step_event(self, kind: str, payload: dict[str, Any], rt: RunRuntime | None) -> None:
        workflow = self._workflow(rt)
        step_kind = _kind(rt, str(payload.get("step", "")))
        if kind == "agent.task.started" and "attempt" in payload and not payload.get(
            "after_waiting"
        ):
            self.attempts.inc((workflow, step_kind))
        elif kind == "agent.task.retrying":
            self.retries.inc((workflow, step_kind))
        elif kind == "agent.task.fallback":
            self.fallbacks.inc((workflow, step_kind))
            self._budget_refusal(workflow, payload)
        elif kind in ("agent.task.completed", "agent.task.failed"):
            if kind == "agent.task.failed":
                self._budget_refusal(workflow, payload)
            if payload.get("index", -1) < 0:
                status = "succeeded" if kind == "agent.task.completed" else "failed"
                seconds = float(payload.get("duration_s") or 0.0)
                self.step_seconds.observe((workflow, step_kind, status), seconds)
        elif kind == "agent.task.throttled" and "scope" in payload:  # a budget holds it back
            self.budget_blocked.inc((workflow, "throttled"))
        elif kind == "agent.task.compensated":
            self.compensations.inc((workflow, "ok"))
        elif kind == "agent.task.compensation_failed":
            self.compensations.inc((workflow, "failed"))

    def _budget_refusal(self, workflow: str, payload: dict[str, Any]) -> None:
        # The refused call's own error; a for_each parent's says "instance N failed: ...".
        if str(payload.get("error") or "").startswith("budget_exceeded"):
            self.budget_blocked.inc((workflow, "refused"))

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
            self.tokens.inc((workflow, model, "input"), row.tokens_in)
        if row.tokens_out:
            self.tokens.inc((workflow, model, "output"), row.tokens_out)
        if row.usd:
            self.cost.inc((workflow, model), row.usd)


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
        commits = CommitMetrics(engine, engine.clock)
        registry.register(commits)
        metrics = cls(registry, commits, state)
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
