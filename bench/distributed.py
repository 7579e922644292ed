"""Drives one workload through N worker processes (PostgreSQL store, Redis Streams bus).

The bench process submits and waits (an `Engine` on the same store and bus, as a client would);
`podium worker` processes run the steps. Each measurement gets its own PostgreSQL schema and
Redis key prefix, dropped afterwards, and its own workers, stopped with SIGTERM afterwards.

Step bodies run in the workers, so their start/end times come back through files: with
`BENCH_TIMES_DIR` set, `bench.tasks` appends `run step start end` lines (perf_counter, which is
CLOCK_MONOTONIC on Linux: comparable across processes on one machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from array import array
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import tasks
from bench.measure import ROOT, BenchError, peak_rss_mib, take_decision_latencies_ms
from bench.runner import RunTiming, build_report, drive, load_rows
from bench.workloads import Spec
from podium.bus import open_bus
from podium.engine.engine import Engine
from podium.errors import PodiumError
from podium.settings import Settings
from podium.store import open_store

CONFIG = "distributed-postgres-redis"
POSTGRES_URL = os.environ.get("BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/0")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


@dataclass
class Workers:
    """N `podium worker` processes on one schema and prefix; stopped and cleaned up on exit."""

    count: int
    concurrency: int
    times_dir: Path
    name: str = field(default_factory=lambda: f"bench_{uuid.uuid4().hex[:16]}")
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    peak_rss_mib: list[float] = field(default_factory=list)
    stopped: bool = False

    @property
    def store_url(self) -> str:
        sep = "&" if "?" in POSTGRES_URL else "?"
        return f"{POSTGRES_URL}{sep}schema={self.name}"

    @property
    def bus_url(self) -> str:
        sep = "&" if "?" in REDIS_URL else "?"
        return f"{REDIS_URL}{sep}prefix={self.name}"

    def start(self) -> None:
        env = {
            **os.environ,
            "BENCH_TIMES_DIR": str(self.times_dir),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        cmd = [
            sys.executable, "-m", "podium.cli.app", "worker",
            "--concurrency", str(self.concurrency),
            "--store", self.store_url, "--bus", self.bus_url,
        ]
        for k in range(self.count):
            log = (self.times_dir / f"worker-{k}.log").open("wb")
            with log:
                self.procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log))

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def check_alive(self) -> None:
        for k, proc in enumerate(self.procs):
            if proc.poll() is not None:
                tail = (self.times_dir / f"worker-{k}.log").read_text(errors="replace")[-500:]
                raise BenchError(f"worker {k} exited with {proc.returncode}: {tail.strip()}")

    def stop(self) -> None:
        """Records each worker's peak RSS, then SIGTERM (drain) and, if need be, SIGKILL."""
        if self.stopped:
            return
        self.stopped = True
        self.peak_rss_mib = [_vm_hwm_mib(p.pid) for p in self.procs if p.poll() is None]
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def drop(self) -> None:
        import psycopg
        import redis
        from psycopg import sql

        with contextlib.suppress(psycopg.Error), psycopg.connect(
            POSTGRES_URL, autocommit=True, connect_timeout=10
        ) as conn:
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.name))
            )
        with contextlib.suppress(redis.RedisError), redis.Redis.from_url(REDIS_URL) as client:
            keys = list(client.scan_iter(match=f"{self.name}:*"))
            if keys:
                client.delete(*keys)


async def _synchronous_commit() -> str:
    import psycopg

    try:
        conn = await psycopg.AsyncConnection.connect(POSTGRES_URL, connect_timeout=10)
        async with conn:
            row = await (await conn.execute("SHOW synchronous_commit")).fetchone()
    except psycopg.Error:
        return "unknown"
    return str(row[0]) if row else "unknown"


def _vm_hwm_mib(pid: int) -> float:
    """A live process's peak resident set size (VmHWM in /proc), 0 where there is no /proc."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


@contextlib.contextmanager
def running_workers(count: int, concurrency: int) -> Iterator[Workers]:
    with tempfile.TemporaryDirectory(prefix="podium-bench-dist-") as tmp:
        workers = Workers(count, concurrency, Path(tmp))
        try:
            workers.start()
            yield workers
        finally:
            workers.stop()
            workers.drop()


@contextlib.asynccontextmanager
async def submitter(workers: Workers, settings: Settings) -> AsyncIterator[Engine]:
    try:
        async with (
            open_store(workers.store_url) as store,
            open_bus(workers.bus_url) as bus,
            Engine(store, bus, settings) as engine,
        ):
            yield engine
    except PodiumError as exc:
        raise BenchError(f"distributed mode needs PostgreSQL and Redis: {exc}") from exc


async def _wait_for_heartbeats(engine: Engine, workers: Workers) -> None:
    """Until every worker has written its first heartbeat (it is taking dispatches)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    wanted = set(workers.pids())
    while True:
        workers.check_alive()
        beating = {w.pid for w in await engine.store.list_workers() if w.state == "running"}
        if wanted <= beating:
            return
        if time.monotonic() > deadline:
            raise BenchError(f"{len(wanted - beating)} workers did not start within 60s")
        await asyncio.sleep(0.1)


def read_times(times_dir: Path) -> dict[tuple[str, str], tuple[float, float]]:
    """The step bodies' (start, end) per (run, step), from every worker's file."""
    times: dict[tuple[str, str], tuple[float, float]] = {}
    for path in times_dir.glob("times-*.tsv"):
        for line in path.read_text().splitlines():
            run_id, step_id, start, end = line.split("\t")
            times[(run_id, step_id)] = (float(start), float(end))
    return times


def decision_latencies(spec: Spec, timings: list[RunTiming], times_dir: Path) -> array[float]:
    times = read_times(times_dir)
    decisions: array[float] = array("d")
    for timing in timings:
        decisions.extend(take_decision_latencies_ms(spec.needs, times, timing.run_id))
    return decisions


async def run_distributed(
    spec: Spec, settings: Settings, workers: int, concurrency: int
) -> dict[str, Any]:
    """Runs `spec` on `workers` fresh worker processes and reports its figures."""
    tasks.TIMES.clear()
    rss_before = peak_rss_mib()
    with running_workers(workers, concurrency) as started:
        async with submitter(started, settings) as engine:
            await _wait_for_heartbeats(engine, started)
            timings = await drive(engine, spec, array("d"))
            rows = await load_rows(engine.store, timings)
        started.check_alive()
        started.stop()  # so every step body's time is written and peak RSS read
        decisions = decision_latencies(spec, timings, started.times_dir)
        worker_rss = started.peak_rss_mib
    submitter_rss = peak_rss_mib()
    report = build_report(spec, settings, timings, rows, decisions, rss_before)
    report.update(
        config=CONFIG,
        workers=workers,
        worker_concurrency=concurrency,
        max_active_runs=concurrency,
        durable=True,  # each transition is committed to PostgreSQL before it takes effect
        durability=f"postgresql synchronous_commit={await _synchronous_commit()}",
        peak_rss_mib=max(worker_rss, default=0.0),  # the largest worker's (one process)
        workers_peak_rss_mib=worker_rss,
        submitter_peak_rss_mib=submitter_rss,
    )
    return report
