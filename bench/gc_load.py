"""What `podium gc` costs a running engine: W2 throughput with and without a gc pass deleting
old W2-shaped runs from the same SQLite store, the deletion rate, and the longest stall.

Run: `python -m bench.gc_load [--runs 100000] [--batch 500] [--rounds 3] [--store-dir DIR]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any

from bench.runner import drive
from bench.workloads import build
from podium.bus import open_bus
from podium.clock import SYSTEM_CLOCK
from podium.control.retention import Policy, Report, collect
from podium.engine.engine import Engine
from podium.events import Event
from podium.settings import Settings
from podium.store import Batch, RunState, StepState, Store, open_store
from podium.store.codec import encode

DAY = 86400.0
CHUNK = 2000  # seeded runs per write
STEPS = ["start", *(f"p{k}" for k in range(8)), "join"]  # W2's shape


async def seed(store: Store, runs: int, now: float) -> None:
    """`runs` succeeded W2-shaped runs that finished 40 days ago: 10 steps with small
    outputs and two events each."""
    output = encode({"i": 1})
    for first in range(0, runs, CHUNK):
        batch = Batch(definitions={"w2": b'{"name": "bench-w2-diamond"}'})
        for i in range(first, min(first + CHUNK, runs)):
            created = now - 40 * DAY + i * 0.01
            run_id = f"old-{i:08d}"
            batch.runs[run_id] = RunState(
                run_id, "bench-w2-diamond", "1", "w2", {}, status="succeeded",
                created_at=created, started_at=created, finished_at=created + 0.05,
            )
            for step_id in STEPS:
                step = StepState(run_id, step_id, status="succeeded", attempts=1,
                                 started_at=created, finished_at=created, output_blob=output)
                batch.steps[step.key] = step
            batch.events += [Event("run.queued", run_id, {}, timestamp=created),
                             Event("run.succeeded", run_id, {}, timestamp=created + 0.05)]
        await store.write(batch)


async def w2_round(engine: Engine) -> float:
    """One W2 round (200 runs at once): workflows per second."""
    spec = build("W2")
    started = time.perf_counter()
    await drive(engine, spec, array("d"))
    return spec.n_workflows / (time.perf_counter() - started)


class WriterTimes:
    """Times every transaction on the SQLite store's writer thread: how long it held the
    writer, and how long it waited for it (behind the others); gc's kept apart."""

    def __init__(self, store: Any) -> None:
        self.held: dict[bool, list[float]] = {True: [], False: []}
        self.waited: dict[bool, list[float]] = {True: [], False: []}
        on_writer = store._on_writer

        async def timed(work: Any) -> Any:
            is_gc = getattr(work, "__name__", "") == "delete"
            submitted = time.perf_counter()

            def run(db: Any) -> Any:
                began = time.perf_counter()
                self.waited[is_gc].append(began - submitted)
                try:
                    return work(db)
                finally:
                    self.held[is_gc].append(time.perf_counter() - began)

            return await on_writer(run)

        store._on_writer = timed

    def reset(self) -> None:
        for times in (*self.held.values(), *self.waited.values()):
            times.clear()

    def summary(self) -> dict[str, float]:
        def ms(values: list[float], q: float) -> float:
            ordered = sorted(values)
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2) if (
                ordered) else 0.0

        return {
            "gc_batch_held_ms_max": ms(self.held[True], 1.0),
            "gc_batch_held_ms_p50": ms(self.held[True], 0.5),
            "engine_write_wait_ms_p99": ms(self.waited[False], 0.99),
            "engine_write_wait_ms_max": ms(self.waited[False], 1.0),
        }


async def loop_lag(stop: asyncio.Event, lags: list[float]) -> None:
    """The event loop's worst lateness on 1 ms ticks: how long nothing else could run."""
    while not stop.is_set():
        due = time.perf_counter() + 0.001
        await asyncio.sleep(0.001)
        lags.append(time.perf_counter() - due)


async def main(runs: int, batch: int, rounds: int, store_dir: Path) -> dict[str, Any]:
    url = f"sqlite:///{store_dir / 'gc.db'}"
    async with open_store(url) as store, open_bus("memory://") as bus:
        started = time.perf_counter()
        await seed(store, runs, time.time())
        seed_s = time.perf_counter() - started
        writer = WriterTimes(store)
        async with Engine(store, bus, Settings()) as engine:
            await w2_round(engine)  # warm-up: imports, compiled plan
            writer.reset()
            before = [await w2_round(engine) for _ in range(rounds)]
            alone = writer.summary()
            writer.reset()
            stop, lags_gc, lags_idle = asyncio.Event(), [], []
            lag = asyncio.create_task(loop_lag(stop, lags_gc))
            policy = Policy(runs_s=30 * DAY, batch=batch)
            gc = asyncio.create_task(collect(store, policy, SYSTEM_CLOCK))
            during = []
            while not gc.done():
                during.append(await w2_round(engine))
            report: Report = gc.result()
            stop.set()
            await lag
            with_gc = writer.summary()
            after = [await w2_round(engine) for _ in range(rounds)]
            stop = asyncio.Event()
            lag = asyncio.create_task(loop_lag(stop, lags_idle))
            await w2_round(engine)
            stop.set()
            await lag
    baseline = before + after
    return {
        "seeded_runs": runs, "seeded_steps": runs * len(STEPS), "seed_s": round(seed_s, 1),
        "batch": batch,
        "w2_wf_per_s_without_gc": round(statistics.median(baseline), 1),
        "w2_wf_per_s_without_gc_all": [round(v, 1) for v in baseline],
        "w2_wf_per_s_during_gc": round(statistics.median(during), 1) if during else None,
        "w2_wf_per_s_during_gc_all": [round(v, 1) for v in during],
        "gc_runs_deleted": report.runs, "gc_steps_deleted": report.steps,
        "gc_batches": report.batches, "gc_s": round(report.seconds, 2),
        "gc_runs_per_s": round(report.runs / report.seconds, 1) if report.seconds else None,
        "gc_max_batch_ms": round(report.max_batch_s * 1000, 1),
        "engine_write_wait_ms_p99_w2_alone": alone["engine_write_wait_ms_p99"],
        "engine_write_wait_ms_max_w2_alone": alone["engine_write_wait_ms_max"],
        "engine_write_wait_ms_p99_during_gc": with_gc["engine_write_wait_ms_p99"],
        "engine_write_wait_ms_max_during_gc": with_gc["engine_write_wait_ms_max"],
        "gc_batch_held_writer_ms_max": with_gc["gc_batch_held_ms_max"],
        "gc_batch_held_writer_ms_p50": with_gc["gc_batch_held_ms_p50"],
        "loop_max_lag_ms_during_gc": round(max(lags_gc, default=0) * 1000, 1),
        "loop_max_lag_ms_w2_alone": round(max(lags_idle, default=0) * 1000, 1),
    }


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3, help="W2 rounds before and after gc")
    parser.add_argument("--store-dir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        where = args.store_dir or Path(tmp)
        print(json.dumps(asyncio.run(main(args.runs, args.batch, args.rounds, where))))


if __name__ == "__main__":
    cli()
