"""Drives one workload through the embedded engine (SQLite store, memory bus) and measures it.

It runs inside the per-workload subprocess and returns the report as a plain dict.
"""

from __future__ import annotations

import asyncio
import os
import platform
import resource
import time
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import tasks
from bench.measure import BenchError, peak_rss_mib, percentiles, take_decision_latencies_ms
from bench.workloads import Spec
from podium.bus import open_bus
from podium.engine.engine import Engine
from podium.observe.tracing import Tracing
from podium.settings import Settings
from podium.store import RunState, Store, open_store

CONFIG = "embedded-sqlite"


@dataclass(frozen=True, slots=True)
class RunTiming:
    run_id: str
    submit_wall: float  # time.time() at submit start: compared with the run row's started_at
    submit_t: float  # perf_counter at submit start
    done_t: float  # perf_counter once the run is final (committed)


async def _submit_and_wait(engine: Engine, spec: Spec, decisions: array[float]) -> RunTiming:
    wall, start = time.time(), time.perf_counter()
    run_id = await engine.submit(spec.workflow, {})
    await engine.wait_done(run_id)
    done = time.perf_counter()
    decisions.extend(take_decision_latencies_ms(spec.needs, tasks.TIMES, run_id))
    return RunTiming(run_id, wall, start, done)


async def drive(engine: Engine, spec: Spec, decisions: array[float]) -> list[RunTiming]:
    """Each round submits `concurrency` runs at once and waits for all; rounds run in turn."""
    timings: list[RunTiming] = []
    for _ in range(spec.repeats):
        round_ = (
            _submit_and_wait(engine, spec, decisions) for _ in range(spec.concurrency)
        )
        timings.extend(await asyncio.gather(*round_))
    return timings


async def load_rows(store: Store, timings: list[RunTiming]) -> list[RunState]:
    """The final run rows; raises BenchError unless every run succeeded."""
    rows = []
    for timing in timings:
        row = await store.get_run(timing.run_id)
        if row is None or row.status != "succeeded":
            status = row.status if row else "missing"
            error = row.error if row else None
            raise BenchError(f"run {timing.run_id} ended {status}: {error}")
        rows.append(row)
    return rows


def queue_waits_ms(timings: list[RunTiming], rows: list[RunState]) -> list[float]:
    """Submit start → `run.started` (the row's started_at is stamped with that event)."""
    return [
        ((row.started_at or t.submit_wall) - t.submit_wall) * 1000
        for t, row in zip(timings, rows, strict=True)
    ]


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


def build_report(
    spec: Spec, settings: Settings, timings: list[RunTiming], rows: list[RunState],
    decisions: array[float], rss_before: float,
) -> dict[str, Any]:
    wall = max(t.done_t for t in timings) - min(t.submit_t for t in timings)
    return {
        "workload": spec.name,
        "shape": spec.shape,
        "config": CONFIG,
        "durable": True,  # SQLite WAL: each transition committed before it takes effect
        "durability": settings.durability,
        "n_workflows": len(timings),
        "concurrency": spec.concurrency,
        "steps_per_workflow": spec.steps_per_workflow,
        "max_active_runs": settings.max_active_runs,
        "wall_s": round(wall, 3),
        "workflows_per_s": _rate(len(timings), wall),
        "steps_per_s": _rate(len(timings) * spec.steps_per_workflow, wall),
        "e2e_latency_ms": percentiles([(t.done_t - t.submit_t) * 1000 for t in timings]),
        "decision_latency_ms": percentiles(decisions),
        "decision_samples": len(decisions),  # edges measured: one per step with predecessors
        "queue_wait_ms": percentiles(queue_waits_ms(timings, rows)),
        "peak_rss_mib": peak_rss_mib(),
        "rss_before_mib": rss_before,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }


async def run_workload(
    spec: Spec, db_path: Path, settings: Settings, *, trace: bool = False
) -> dict[str, Any]:
    """Runs `spec` on a fresh SQLite file and reports its figures; `trace`: with tracing on,
    exporting as the OTEL_* variables say (spans left at the end are flushed after `wall_s`)."""
    tasks.TIMES.clear()
    decisions: array[float] = array("d")  # compact: W6 collects 90,000 of them
    rss_before = peak_rss_mib()
    tracing = Tracing.from_env() if trace else None
    if trace and tracing is None:
        raise BenchError("--trace: the OTEL_* variables configure no exporter")
    if tracing is not None and not tracing.ready(30):  # its set-up is not the workload's cost
        raise BenchError("--trace: the span export process did not start")
    async with open_store(f"sqlite:///{db_path}") as store, open_bus("memory://") as bus:
        async with Engine(store, bus, settings) as engine:
            if tracing is not None:
                tracing.install(engine)
            cpu = time.process_time()
            timings = await drive(engine, spec, decisions)
            cpu = time.process_time() - cpu
        if tracing is not None:
            tracing.shutdown()
        rows = await load_rows(store, timings)
    report = build_report(spec, settings, timings, rows, decisions, rss_before)
    report["cpu_s"] = round(cpu, 3)
    if tracing is not None:  # the span export process, if any, has ended: its CPU is counted
        report["export_cpu_s"] = round(_children_cpu_s(), 3)
    return report


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
