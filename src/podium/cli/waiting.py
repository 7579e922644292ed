"""While `podium run` waits on a shared bus: says once when no worker is alive to take the run.

Without it a run submitted with no `podium worker` running waits silently forever.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING

from podium.cli.common import note
from podium.clock import Clock
from podium.errors import PodiumError
from podium.store.roles import WorkerRegistry

if TYPE_CHECKING:
    from podium.engine.engine import Engine

NO_WORKER_NOTICE_S = 5.0  # how long without any worker heartbeat before saying so


@asynccontextmanager
async def watch_workers(engine: Engine, run_id: str) -> AsyncIterator[None]:
    """Around the wait for a run: in distributed mode, notes once if no worker is alive."""
    if not engine.bus.distributed:
        yield
        return
    task = asyncio.create_task(warn_without_workers(engine.store, engine.clock, run_id))
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


async def warn_without_workers(
    store: WorkerRegistry, clock: Clock, run_id: str, after_s: float = NO_WORKER_NOTICE_S
) -> None:
    """Checks every `after_s`; the first time no running worker beat within `after_s`, says so
    (the wait goes on: a worker started later takes the run)."""
    while True:
        await clock.sleep(after_s)
        try:
            alive = await any_worker_alive(store, clock.now() - after_s)
        except PodiumError:  # the engine reports a store failure; this notice is only a hint
            continue
        if not alive:
            note(
                f"no worker has sent a heartbeat for {after_s:g} s: run {run_id} waits until a"
                " `podium worker` on this store and bus takes it (still waiting; Ctrl-C cancels)"
            )
            return


async def any_worker_alive(store: WorkerRegistry, since: float) -> bool:
    workers = await store.list_workers()
    return any(w.state == "running" and w.heartbeat_at >= since for w in workers)
