"""`podium run` gives feedback from the first second: the run id at submit, `--detach`, and a
notice when no worker is alive to take a distributed run."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from cli_support import Podium
from clocklib import eventually
from redislib import redis_prefix, redis_url

from podium.cli.waiting import warn_without_workers
from podium.clock import FakeClock
from podium.store import open_store
from podium.store.base import Store
from podium.store.records import WorkerInfo

__all__ = ["redis_prefix"]  # the fixture, used by name
QUICK = "name: quick\nsteps:\n  a: {kind: sim}\n"


@pytest.fixture
def podium(tmp_path: Path) -> Podium:
    return Podium(tmp_path / "p.db", tmp_path)


@pytest.fixture
def redis_bus(redis_prefix: str) -> str:
    """A bus URL with a fresh key prefix (deleted afterwards); fails under CI, else skips."""
    return redis_url(redis_prefix)


def test_run_prints_the_run_id_as_queued_on_stderr_without_a_terminal(podium: Podium) -> None:
    result = podium("run", str(podium.write("quick.yaml", QUICK)), "--json")
    assert result.code == 0
    assert f"run {result.json()['run_id']} queued" in result.stderr.splitlines()


def test_detach_without_a_shared_bus_is_a_usage_error_that_says_what_to_set(
    podium: Podium,
) -> None:
    result = podium("run", str(podium.write("quick.yaml", QUICK)), "--detach")
    assert result.code == 2
    assert "--detach needs workers" in result.stderr and "PODIUM_BUS" in result.stderr
    assert not podium.store_path.exists() or asyncio.run(_runs(podium.store)) == []


def test_detach_submits_prints_the_id_on_stdout_and_leaves_the_run_queued(
    podium: Podium, redis_bus: str
) -> None:
    path = podium.write("quick.yaml", QUICK)
    result = podium("run", str(path), "--detach", "--bus", redis_bus)
    assert result.code == 0, result.stderr
    run_id = result.stdout.strip()
    assert f"run {run_id} queued; a `podium worker`" in result.stderr
    assert asyncio.run(_runs(podium.store)) == [(run_id, "queued")]


async def _runs(url: str) -> list[tuple[str, str]]:
    async with open_store(url) as store:
        return [(r.run_id, r.status) for r in await store.list_runs()]


def _worker(clock: FakeClock, state: str = "running") -> WorkerInfo:
    now = clock.now()
    return WorkerInfo("w1", "host", 1, 4, 0, state, now, now)


async def test_no_worker_heartbeat_is_said_once_and_the_wait_goes_on(
    clocked_store: Store, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    await clocked_store.heartbeat(_worker(clock))
    watch = asyncio.create_task(warn_without_workers(clocked_store, clock, "r1", after_s=5))
    for _ in range(3):  # the worker beats: nothing to say
        await _advance(clock, 5, watch)
        await clocked_store.heartbeat(_worker(clock))
    assert "no worker" not in capsys.readouterr().err
    await _advance(clock, 5.1, watch)  # the last beat is now 5.1 s old: said, and the watch is over
    await asyncio.wait_for(watch, 5)
    err = capsys.readouterr().err
    assert err.count("no worker has sent a heartbeat for 5 s: run r1 waits") == 1


async def _advance(clock: FakeClock, seconds: float, watch: asyncio.Task[None]) -> None:
    """Moves time once the watcher sleeps on it, then waits until it has looked at the store:
    asleep on the clock again, or done."""
    await eventually(lambda: clock.sleepers > 0)
    clock.advance(seconds)
    await eventually(lambda: clock.sleepers > 0 or watch.done())
