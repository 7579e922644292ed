"""The gauges that are state, read from the store at scrape time: queue, workers, circuits...

One read serves every scrape for `cache_s` seconds, so a scraper hammering `/metrics` costs
the store one round of queries a second at most.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from podium.clock import Clock
from podium.control.budgets import windows_of
from podium.control.plane import ControlPlane
from podium.model.workflow import PRIORITY_RANK
from podium.observe.labels import BoundedLabel
from podium.observe.scaling import Load, ScalingPolicy, desired_workers
from podium.store.base import Store
from podium.store.records import CircuitRecord, QueueStat, WorkerInfo
from podium.store.spend import ScopeUsage

log = structlog.get_logger("podium.metrics")

ALIVE_AFTER_S = 10.0  # a worker silent for longer is `lost` (as `podium workers` shows it)
WORKER_STATES = ("running", "draining", "stopped", "lost")
CIRCUIT_VALUES = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
SCRAPE_WAIT_S = 5.0  # a scrape from another thread waits this long for the store


@dataclass(slots=True)
class Snapshot:
    """The store's state as last read; `ok` False when that read failed (gauges keep the
    values before it, `podium_state_up` says 0)."""

    ok: bool = False
    queue: list[QueueStat] = field(default_factory=list)
    workers: list[WorkerInfo] = field(default_factory=list)
    circuits: list[CircuitRecord] = field(default_factory=list)
    budgets: list[ScopeUsage] = field(default_factory=list)
    arrived: int = 0
    mean_service_s: float | None = None
    running: int = 0
    dead_letters: int = 0
    now: float = 0.0


class StateCollector(Collector):
    """A prometheus_client collector over the store's state and this engine's control layer."""

    def __init__(
        self, store: Store, control: ControlPlane, clock: Clock, policy: ScalingPolicy,
        *, cache_s: float = 1.0,
    ) -> None:
        self._store = store
        self._control = control
        self._clock = clock
        self.policy = policy
        self.cache_s = cache_s
        self.reads = 0  # rounds of store queries made (tests check the cache)
        self._snapshot = Snapshot()
        self._read_at: float | None = None
        self._lock = asyncio.Lock()
        # The engine's loop, learnt on the first refresh: a scrape on another thread (the
        # worker's scrape server) asks it to refresh.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._keys = BoundedLabel(200)  # circuit keys
        self._limits = BoundedLabel(200)  # rate-limit buckets

    async def refresh(self) -> None:
        """Reads the store unless the last read is younger than `cache_s`."""
        self._loop, self._loop_thread = asyncio.get_running_loop(), threading.get_ident()
        async with self._lock:
            at = self._clock.monotonic()
            if self._read_at is not None and at - self._read_at < self.cache_s:
                return
            self._read_at = at
            self.reads += 1
            try:
                self._snapshot = await self._read()
            except Exception as exc:  # a scrape shows the store is down; it never fails
                log.warning("reading state for metrics failed", error=str(exc))
                self._snapshot.ok = False

    async def _read(self) -> Snapshot:
        store, now = self._store, self._clock.now()
        activity = await store.run_activity(now - self.policy.window_s)
        scopes = windows_of(self._control.config.budgets)
        return Snapshot(
            ok=True,
            queue=await store.queue_stats(),
            workers=await store.list_workers(),
            circuits=await store.list_circuits(),
            budgets=await store.budget_usage(scopes) if scopes else [],
            arrived=activity.arrived,
            mean_service_s=activity.mean_service_s,
            running=activity.running,
            dead_letters=activity.dead_letters,
            now=now,
        )

    def collect(self) -> Iterator[Metric]:
        loop = self._loop
        if loop is not None and threading.get_ident() != self._loop_thread:  # another thread
            future = asyncio.run_coroutine_threadsafe(self.refresh(), loop)
            try:
                future.result(SCRAPE_WAIT_S)
            except Exception as exc:  # the loop is busy or stopping: show what is known
                future.cancel()
                log.warning("metrics scrape could not read state", error=repr(exc))
        snap = self._snapshot
        up = GaugeMetricFamily("podium_state_up", "1 if the last read of the store succeeded")
        up.add_metric([], 1.0 if snap.ok else 0.0)
        yield up
        yield from self._queue(snap)
        yield from self._runs(snap)
        yield from self._workers(snap)
        yield self._circuits(snap)
        yield from self._budgets(snap)
        yield self._rate_limited()

    def _queue(self, snap: Snapshot) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "podium_queue_depth", "Runs queued, per priority", labels=["priority"]
        )
        oldest = GaugeMetricFamily(
            "podium_queue_oldest_wait_seconds", "How long the oldest queued run has waited",
            labels=["priority"],
        )
        stats = {s.priority: s for s in snap.queue}
        for priority in PRIORITY_RANK:
            stat = stats.get(priority)
            depth.add_metric([priority], float(stat.depth) if stat else 0.0)
            since = stat.oldest_created_at if stat else None
            oldest.add_metric([priority], max(0.0, snap.now - since) if since else 0.0)
        yield depth
        yield oldest

    def _runs(self, snap: Snapshot) -> Iterator[Metric]:
        running = GaugeMetricFamily("podium_active_runs", "Runs running now, store-wide")
        running.add_metric([], float(snap.running))
        yield running
        dlq = GaugeMetricFamily("podium_dlq_size", "Runs in the dead-letter queue")
        dlq.add_metric([], float(snap.dead_letters))
        yield dlq
        policy = self.policy
        rate = GaugeMetricFamily(
            "podium_run_arrival_rate", "Runs created per second over the scaling window"
        )
        rate.add_metric([], snap.arrived / policy.window_s)
        yield rate
        service = GaugeMetricFamily(
            "podium_run_service_seconds",
            "Mean run time (start to end, or to now) of the window's runs",
        )
        service.add_metric([], snap.mean_service_s or 0.0)
        yield service
        queued = sum(s.depth for s in snap.queue)
        load = Load(snap.arrived, snap.mean_service_s, queued, snap.running)
        desired = GaugeMetricFamily(
            "podium_desired_workers",
            "Workers the arrival rate, run times and queue call for (Little's law)",
        )
        desired.add_metric([], float(desired_workers(load, policy, self._slots(snap))))
        yield desired

    def _slots(self, snap: Snapshot) -> int | None:
        """Slots per worker: the mean concurrency of live workers, if any."""
        live = [w.concurrency for w in snap.workers if self._state(w, snap.now) == "running"]
        return round(sum(live) / len(live)) if live else None

    @staticmethod
    def _state(worker: WorkerInfo, now: float) -> str:
        if worker.state != "stopped" and now - worker.heartbeat_at >= ALIVE_AFTER_S:
            return "lost"
        return worker.state if worker.state in WORKER_STATES else "lost"

    def _workers(self, snap: Snapshot) -> Iterator[Metric]:
        counts = dict.fromkeys(WORKER_STATES, 0)
        busy = slots = 0
        for worker in snap.workers:
            state = self._state(worker, snap.now)
            counts[state] += 1
            if state == "running":
                busy, slots = busy + worker.active, slots + worker.concurrency
        workers = GaugeMetricFamily(
            "podium_workers", "Workers by state (lost: no heartbeat for 10 s)", labels=["state"]
        )
        for state, count in counts.items():
            workers.add_metric([state], float(count))
        yield workers
        capacity = GaugeMetricFamily(
            "podium_worker_slots", "Run slots of running workers: busy or free", labels=["state"]
        )
        capacity.add_metric(["busy"], float(busy))
        capacity.add_metric(["free"], float(max(0, slots - busy)))
        yield capacity

    def _circuits(self, snap: Snapshot) -> Metric:
        family = GaugeMetricFamily(
            "podium_circuit_state", "Circuit breakers: 0 closed, 1 half-open, 2 open",
            labels=["key"],
        )
        for record in snap.circuits:
            family.add_metric([self._keys(record.key)], CIRCUIT_VALUES.get(record.state, 2.0))
        return family

    def _budgets(self, snap: Snapshot) -> Iterator[Metric]:
        names = ("limit", "used", "remaining")
        helps = (
            "A budget scope's limit over its rolling window",
            "Spent and held in a budget scope's window",
            "What is left of a budget scope (negative: overspent)",
        )
        families = [
            GaugeMetricFamily(f"podium_budget_{name}_usd", text, labels=["scope"])
            for name, text in zip(names, helps, strict=True)
        ]
        for usage in snap.budgets:
            used = usage.spent_usd + usage.held_usd
            limit = usage.scope.limit_usd
            for family, value in zip(families, (limit, used, limit - used), strict=True):
                family.add_metric([usage.scope.scope], value)
        yield from families

    def _rate_limited(self) -> Metric:
        family = CounterMetricFamily(
            "podium_rate_limited_calls", "Calls that waited for rate-limit tokens (this process)",
            labels=["limit"],
        )
        totals: dict[str, int] = {}
        for key, count in list(self._control.buckets.waits.items()):
            label = self._limits(key)
            totals[label] = totals.get(label, 0) + count
        for label, count in totals.items():
            family.add_metric([label], float(count))
        return family
