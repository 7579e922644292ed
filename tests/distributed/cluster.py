"""Distributed-mode test helpers: the services, worker processes, a submitter, step bodies.

Each cluster works under its own PostgreSQL schema and Redis key prefix, dropped afterwards.
PostgreSQL and Redis are the machine's own: a test that stops one starts it again in a
`finally` (`ensure_services`), since later tests (and CI) need them.

Workers import this module to run the step bodies below (`call: cluster:effect`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from podium.steps import StepContext

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
CLOSING_DUMP_S = 60.0  # a submitter that takes longer to close is stuck
REDIS_START = [
    "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1",
    "--port", str(REDIS_PORT), "--save", "", "--appendonly", "no",
    "--dir", "/var/lib/redis", "--logfile", "/var/log/redis/ci.log",
]


# -- step bodies (run inside the workers) ------------------------------------------------------


class Flaky(RuntimeError):
    """An injected transient failure."""


def _append(path: str, line: str) -> None:
    # One write(2) of a short line on an O_APPEND file: whole lines, whatever else appends.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


async def effect(
    effects: str, fail_rate: float = 0.0, last_attempt: int = 1_000_000, ms: int = 0,
    prev: Any = None, gate: str | None = None, ctx: StepContext | None = None,
) -> dict[str, Any]:
    """Appends `key nonce pid` to the effects file and returns the nonce.

    With probability `fail_rate` the attempt fails, half the time before the side effect and
    half after it; never from `last_attempt` on, so injected failures stay within the retry
    budget (a crash re-launch counts as an attempt too). With a `gate` path, it stays in
    flight after the side effect until the test creates that file.
    """
    assert ctx is not None
    fails = ctx.attempt < last_attempt and random.random() < fail_rate
    if fails and random.random() < 0.5:
        raise Flaky(f"injected failure before the side effect (attempt {ctx.attempt})")
    nonce = uuid.uuid4().hex
    _append(effects, f"{ctx.idempotency_key} {nonce} {os.getpid()}\n")
    while gate is not None and not os.path.exists(gate):
        await asyncio.sleep(0.02)
    if ms:
        await asyncio.sleep(ms / 1000)
    if fails:
        raise Flaky(f"injected failure after the side effect (attempt {ctx.attempt})")
    return {"nonce": nonce}


def effect_step(effects: Path, needs: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    """A python step running `effect`; `extra` keys go to the step if known, else to the input."""
    step_keys = {"retry", "timeout", "for_each", "max_parallel"}
    inputs = {k: v for k, v in extra.items() if k not in step_keys}
    body: dict[str, Any] = {
        "kind": "python",
        "call": "cluster:effect",
        "input": {"effects": str(effects), **inputs},
        **{k: v for k, v in extra.items() if k in step_keys},
    }
    if needs:
        body["needs"] = needs
    return body


def diamond(name: str, effects: Path, width: int = 8, **extra: Any) -> dict[str, Any]:
    """W2's shape: start -> `width` parallel steps -> a join that receives all their outputs."""
    middle = [f"p{k}" for k in range(width)]
    steps = {"start": effect_step(effects, **extra)}
    steps.update({p: effect_step(effects, ["start"], **extra) for p in middle})
    join = effect_step(effects, middle, **extra)
    join["input"]["prev"] = [f"{{{{ steps.{p}.output }}}}" for p in middle]
    steps["join"] = join
    return {"name": name, "steps": steps}


@dataclass(frozen=True, slots=True)
class Effect:
    """One line of the effects file: a step body that ran (in worker `pid`)."""

    key: str  # the step's idempotency key
    nonce: str
    pid: int


def read_effects(path: Path) -> list[Effect]:
    if not path.exists():
        return []
    lines = (line.split() for line in path.read_text().splitlines())
    return [Effect(key, nonce, int(pid)) for key, nonce, pid in lines]


def last_nonces(effects: list[Effect]) -> dict[str, str]:
    """The nonce each idempotency key was given by the last body that ran for it."""
    return {e.key: e.nonce for e in effects}


# -- services ----------------------------------------------------------------------------------


def postgres_problem() -> str | None:
    import psycopg

    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return " ".join(str(exc).split())


def redis_problem() -> str | None:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    try:
        # No retries: redis-py's default ones take seconds to report a refused connection.
        with redis.Redis(
            REDIS_HOST, REDIS_PORT, socket_connect_timeout=3, retry=Retry(NoBackoff(), 0)
        ) as client:
            client.ping()
            return None
    except redis.RedisError as exc:
        return str(exc)


def require_services() -> None:
    """Fails under CI (`CI=true`) when PostgreSQL or Redis is unreachable, else skips."""
    import pytest

    problems = [
        f"{what}: {problem}"
        for what, problem in (("PostgreSQL", postgres_problem()), ("Redis", redis_problem()))
        if problem is not None
    ]
    if problems:
        message = "distributed tests need them: " + "; ".join(problems)
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def _postgres_version() -> str:
    versions = sorted(os.listdir("/etc/postgresql"), key=lambda v: [int(p) for p in v.split(".")])
    return versions[-1]


def _wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} within {timeout_s:g}s")
        time.sleep(0.1)


def stop_redis() -> None:
    subprocess.run(
        ["redis-cli", "-p", str(REDIS_PORT), "shutdown", "nosave"],
        capture_output=True, timeout=30, check=False,
    )
    _wait_until(lambda: redis_problem() is not None, 30, "Redis did not stop")


def start_redis() -> None:
    if redis_problem() is None:
        return
    subprocess.run(REDIS_START, capture_output=True, timeout=30, check=True)
    _wait_until(lambda: redis_problem() is None, 30, "Redis did not start")


def restart_redis() -> float:
    """Stops Redis (its streams go: it keeps nothing on disk) and starts it; returns seconds."""
    began = time.monotonic()
    stop_redis()
    start_redis()
    return time.monotonic() - began


def _pg_ctl(action: str) -> subprocess.CompletedProcess[str]:
    cmd = ["pg_ctlcluster", "--skip-systemctl-redirect", _postgres_version(), "main", action]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def restart_postgres() -> float:
    """Restarts PostgreSQL (fast shutdown: sessions are cut); returns the seconds it took."""
    began = time.monotonic()
    done = _pg_ctl("restart")
    if done.returncode != 0:
        raise RuntimeError(f"pg_ctlcluster restart failed: {done.stderr.strip()}")
    _wait_until(lambda: postgres_problem() is None, 60, "PostgreSQL did not come back")
    return time.monotonic() - began


def ensure_services() -> None:
    """Starts Redis and PostgreSQL again if a test left one down."""
    if redis_problem() is not None and shutil.which("redis-server"):
        start_redis()
    if postgres_problem() is not None:
        _pg_ctl("start")
        _wait_until(lambda: postgres_problem() is None, 60, "PostgreSQL did not start")


# -- a cluster of worker processes ---------------------------------------------------------------


@dataclass
class Cluster:
    """One test's schema, prefix and worker processes (`python -m podium.cli.app worker`)."""

    workdir: Path
    env: dict[str, str] = field(default_factory=dict)  # PODIUM_* settings for the workers
    name: str = field(default_factory=lambda: f"dist_{uuid.uuid4().hex[:16]}")
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    kills: int = 0
    _spawned: int = 0

    @property
    def store_url(self) -> str:
        return f"{POSTGRES_URL}?schema={self.name}"

    @property
    def bus_url(self) -> str:
        return f"redis://{REDIS_HOST}:{REDIS_PORT}/0?prefix={self.name}"

    @property
    def effects(self) -> Path:
        return self.workdir / "effects.log"

    def command(self, *args: str) -> list[str]:
        """A `podium ARGS` command line run by this interpreter."""
        return [sys.executable, "-m", "podium.cli.app", *args]

    def process_env(self) -> dict[str, str]:
        path = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)
        return {**os.environ, **self.env, "PYTHONPATH": path}

    def spawn(self, concurrency: int = 50, *extra: str) -> subprocess.Popen[bytes]:
        """Starts a worker; its stdout and stderr go to `worker-N.log` in the workdir."""
        self._spawned += 1
        log = (self.workdir / f"worker-{self._spawned}.log").open("wb")
        cmd = self.command(
            "worker", "--concurrency", str(concurrency),
            "--store", self.store_url, "--bus", self.bus_url, *extra,
        )
        with log:
            proc = subprocess.Popen(
                cmd, cwd=self.workdir, env=self.process_env(), stdout=log, stderr=log
            )
        self.workers.append(proc)
        return proc

    def alive(self) -> list[subprocess.Popen[bytes]]:
        return [w for w in self.workers if w.poll() is None]

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        self.kills += 1

    def kill_random(self, rng: random.Random) -> subprocess.Popen[bytes] | None:
        alive = self.alive()
        if not alive:
            return None
        victim = rng.choice(alive)
        self.kill(victim)
        return victim

    def stop_all(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGCONT)  # a test may have left it stopped
                    proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=30)

    def drop(self) -> None:
        """Drops the schema and deletes the Redis keys (services must be up)."""
        import psycopg
        import redis
        from psycopg import sql

        with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=10) as conn:
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.name))
            )
        with redis.Redis(REDIS_HOST, REDIS_PORT) as client:
            keys = list(client.scan_iter(match=f"{self.name}:*"))
            if keys:
                client.delete(*keys)


@contextlib.contextmanager
def cluster(workdir: Path, **env: str) -> Iterator[Cluster]:
    """A cluster whose workers are killed, services restored and names dropped at the end."""
    require_services()
    made = Cluster(workdir, env=env)
    try:
        yield made
    finally:
        try:
            made.stop_all()
        finally:
            ensure_services()
            made.drop()


@contextlib.asynccontextmanager
async def submitter(made: Cluster, **settings: Any) -> AsyncIterator[Any]:
    """An engine in this process that submits runs to the cluster and waits for them."""
    from podium.bus import open_bus
    from podium.engine.engine import Engine
    from podium.settings import Settings
    from podium.store import open_store

    config = Settings(store=made.store_url, bus=made.bus_url, **settings)
    stack = contextlib.AsyncExitStack()
    try:
        store = await stack.enter_async_context(open_store(made.store_url))
        bus = await stack.enter_async_context(open_bus(made.bus_url))
        yield await stack.enter_async_context(Engine(store, bus, config))
    finally:
        # Should closing hang, every task's stack goes to stderr (pytest shows it with the
        # timeout's failure) to say where.
        watch = asyncio.get_running_loop().call_later(CLOSING_DUMP_S, _dump_tasks)
        try:
            await stack.aclose()
        finally:
            watch.cancel()


def _dump_tasks() -> None:
    print(f"closing still waits after {CLOSING_DUMP_S:g}s; its tasks:", file=sys.stderr)
    for task in asyncio.all_tasks():
        task.print_stack(limit=25, file=sys.stderr)


@dataclass(frozen=True)
class Proof:
    """What `prove_exactly_once` counted."""

    steps_committed: int
    bodies_run: int  # side effects written
    retries: int  # `agent.task.retrying` events committed

    @property
    def re_executions(self) -> int:
        return self.bodies_run - self.steps_committed


async def prove_exactly_once(store: Any, effects_path: Path, run_ids: list[str]) -> Proof:
    """Asserts every step of these runs was committed once (one `agent.task.completed`) and
    that its committed nonce is the last one written for its key: no body ran after it."""
    from podium.store import codec

    wanted = set(run_ids)
    completed: Counter[tuple[str, str, int]] = Counter()
    retries = 0
    for _, event in await store.list_events(limit=100_000_000):
        if event.correlation_id not in wanted:
            continue
        if event.event_type == "agent.task.completed":
            completed[(event.correlation_id, event.payload["step"], event.payload["index"])] += 1
        elif event.event_type == "agent.task.retrying":
            retries += 1
    twice = {k: n for k, n in completed.items() if n != 1}
    assert not twice, f"{len(twice)} steps committed more than once: {list(twice.items())[:3]}"

    effects = read_effects(effects_path)
    last = last_nonces(effects)
    stale, steps = [], 0
    for run_id in run_ids:
        for step in await store.get_steps(run_id):
            steps += 1
            key = f"{run_id}/{step.step_id}"
            assert completed[(run_id, step.step_id, step.index)] == 1, f"{key} not completed"
            if codec.decode(step.output_blob)["nonce"] != last.get(key):
                stale.append(key)
    assert not stale, f"{len(stale)} committed steps ran again after the commit: {stale[:3]}"
    assert len(completed) == steps
    return Proof(steps, len(effects), retries)


async def statuses(store: Any) -> Counter[str]:
    """Runs by status, read from the store."""
    runs = await store.list_runs(limit=1_000_000)
    return Counter(r.status for r in runs)


async def wait_for_effects(path: Path, count: int, timeout_s: float = 30) -> list[Effect]:
    """The effects file once it holds at least `count` lines."""
    async with asyncio.timeout(timeout_s):
        while len(effects := read_effects(path)) < count:
            await asyncio.sleep(0.02)
    return effects


async def wait_for_log(path: Path, text: str, timeout_s: float = 30) -> None:
    """Waits until a worker's log says `text`."""
    try:
        async with asyncio.timeout(timeout_s):
            while text not in path.read_text(errors="replace"):
                await asyncio.sleep(0.05)
    except TimeoutError:
        tail = path.read_text(errors="replace")[-2000:]
        raise AssertionError(f"{path.name} never said {text!r}:\n{tail}") from None
