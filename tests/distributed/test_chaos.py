"""Chaos: W2-shaped runs across 3 worker processes while workers are SIGKILLed every 2 s and
Redis and PostgreSQL each restart once. Nothing is lost, no committed step runs again.

Every step body appends `idempotency_key nonce` to a side-effect file, then returns the nonce;
10% of attempts fail (before or after the side effect). The proof: every run
succeeded, every step has exactly one `agent.task.completed`, and its committed nonce is the
LAST line written for its key: no body ran again after its result was committed.

`PODIUM_CHAOS_RUNS` sets the number of runs (default 2,000: 40-75 s on the 2-core CI machine,
with about 20-35 workers killed), `PODIUM_CHAOS_SEED` the random choices of the test itself.
Both services restart once a fifth (Redis) and 45% (PostgreSQL) of the runs are final, so a
count too small to leave time for that fails the test rather than pass without the restarts.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cluster
import pytest

from podium.errors import PodiumError
from podium.model.status import RUN_FINAL
from podium.model.workflow import Workflow

RUNS = int(os.environ.get("PODIUM_CHAOS_RUNS", "2000"))
WORKERS, CONCURRENCY = 3, 50
KILL_EVERY_S = 2.0
WAIT_S = 240.0
LEASE_S = "3"  # a killed worker's runs are taken over after this long
SUBMIT_CHUNK = 250
STEPS_PER_RUN = 10


@dataclass
class Chaos:
    """What the chaos tasks did, for the report."""

    redis_restart_s: float | None = None
    postgres_restart_s: float | None = None
    timeline: list[str] = field(default_factory=list)


def _finished_fraction(schema: str, total: int) -> float | None:
    """Fraction of runs final, read with a plain connection (None while PostgreSQL is down)."""
    import psycopg

    try:
        with psycopg.connect(cluster.POSTGRES_URL, connect_timeout=2) as conn:
            row = conn.execute(
                f"SELECT count(*) FROM {schema}.runs WHERE status NOT IN ('queued', 'running')"
            ).fetchone()
    except psycopg.Error:
        return None
    return (row[0] if row else 0) / total


async def _kill_workers(made: cluster.Cluster, rng: random.Random) -> None:
    """Every 2 s: SIGKILL a random worker and start a replacement (or more: a worker started
    while PostgreSQL restarts gives up at once)."""
    while True:
        await asyncio.sleep(KILL_EVERY_S)
        await asyncio.to_thread(made.kill_random, rng)
        for _ in range(WORKERS - len(made.alive())):
            made.spawn(CONCURRENCY)


async def _restart_services(made: cluster.Cluster, total: int, chaos: Chaos) -> None:
    """Restarts Redis once a fifth of the runs are final, PostgreSQL once 45% are."""
    began = time.monotonic()
    while chaos.postgres_restart_s is None:
        await asyncio.sleep(0.1)
        done = await asyncio.to_thread(_finished_fraction, made.name, total)
        at = f"{time.monotonic() - began:5.1f}s"
        if done is None:
            continue
        if chaos.redis_restart_s is None and done >= 0.2:
            chaos.redis_restart_s = await asyncio.to_thread(cluster.restart_redis)
            chaos.timeline.append(f"{at} Redis restarted at {done:.0%} final")
        elif chaos.redis_restart_s is not None and done >= 0.45:
            chaos.postgres_restart_s = await asyncio.to_thread(cluster.restart_postgres)
            chaos.timeline.append(f"{at} PostgreSQL restarted at {done:.0%} final")


async def _wait_final(engine: Any, run_id: str) -> None:
    """`wait_done`, again after a store outage (PostgreSQL restarting)."""
    while True:
        try:
            await engine.wait_done(run_id)
            return
        except PodiumError:
            await asyncio.sleep(0.5)


async def _submit_all(engine: Any, workflow: Workflow, total: int) -> list[str]:
    ids: list[str] = []
    for first in range(0, total, SUBMIT_CHUNK):
        count = min(SUBMIT_CHUNK, total - first)
        ids += await asyncio.gather(*(engine.submit(workflow) for _ in range(count)))
    return ids


@pytest.mark.slow
@pytest.mark.timeout(360)
async def test_workers_killed_and_services_restarted_lose_nothing_and_repeat_no_committed_step(
    tmp_path: Path,
) -> None:
    rng = random.Random(int(os.environ.get("PODIUM_CHAOS_SEED", "11")))
    with cluster.cluster(tmp_path, PODIUM_LEASE_S=LEASE_S) as made:
        workflow = Workflow.model_validate(
            cluster.diamond(
                "chaos-w2", made.effects, fail_rate=0.1, last_attempt=5,
                retry={"attempts": 5, "backoff": "10ms"},
            )
        )
        for _ in range(WORKERS):
            made.spawn(CONCURRENCY)
        chaos = Chaos()
        began = time.monotonic()
        async with cluster.submitter(made) as engine:
            wreaking = [
                asyncio.create_task(_kill_workers(made, rng)),
                asyncio.create_task(_restart_services(made, RUNS, chaos)),
            ]
            try:
                ids = await _submit_all(engine, workflow, RUNS)
                submitted_s = time.monotonic() - began
                try:
                    async with asyncio.timeout(WAIT_S):
                        await asyncio.gather(*(_wait_final(engine, i) for i in ids))
                except TimeoutError:
                    pass  # the status counts below say what was left
            finally:
                for task in wreaking:
                    task.cancel()
                await asyncio.gather(*wreaking, return_exceptions=True)
            elapsed_s = time.monotonic() - began
            made.stop_all()
            cluster.ensure_services()
            print(
                f"\nchaos: {RUNS} runs in {elapsed_s:.1f}s (submitted in {submitted_s:.1f}s),"
                f" {made.kills} workers SIGKILLed, Redis restart"
                f" {chaos.redis_restart_s or 0:.1f}s, PostgreSQL restart"
                f" {chaos.postgres_restart_s or 0:.1f}s\n  " + "\n  ".join(chaos.timeline)
            )
            print(await _check(engine.store, made, ids))
        assert chaos.redis_restart_s is not None and chaos.postgres_restart_s is not None


async def _check(store: Any, made: cluster.Cluster, ids: list[str]) -> str:
    """Asserts the proof; returns the counts for the report."""
    runs = {r.run_id: r for r in await store.list_runs(limit=len(ids) + 10)}
    by_status = Counter(r.status for r in runs.values())
    print(f"\nruns by status: {dict(by_status)}")
    assert set(runs) == set(ids)
    assert all(r.status in RUN_FINAL for r in runs.values()), dict(by_status)
    assert by_status == {"succeeded": len(ids)}, dict(by_status)
    proof = await cluster.prove_exactly_once(store, made.effects, ids)
    assert proof.steps_committed == len(ids) * STEPS_PER_RUN
    return (
        f"runs {len(ids)}, steps committed {proof.steps_committed}, step bodies executed"
        f" (side effects) {proof.bodies_run}, re-executions {proof.re_executions},"
        f" injected failures retried {proof.retries}, workers SIGKILLed {made.kills}"
    )
