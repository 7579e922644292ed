"""A worker process: takes queued runs from the bus and the store, runs them, heartbeats.

No worker is special. Dispatches come from the bus; the store stays the source of truth, so a
sweeper also claims runs whose holder's lease ran out (a dead worker, or a bus that lost them).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator

import structlog

from podium.bus.base import Bus, Dispatch
from podium.clock import sleep_unless, wait_done
from podium.engine.engine import Engine
from podium.errors import PodiumError
from podium.store.base import Store
from podium.store.records import FORGOTTEN_AFTER_S, WorkerInfo

log = structlog.get_logger("podium.worker")


class Worker:
    def __init__(
        self, engine: Engine, store: Store, bus: Bus, *, concurrency: int,
        max_deliveries: int = 5, heartbeat_s: float = 2.0, drain_s: float = 30.0,
    ) -> None:
        self.engine = engine
        self.store = store
        self.bus = bus
        self.concurrency = concurrency
        self.max_deliveries = max_deliveries
        self.heartbeat_s = heartbeat_s
        self.drain_s = drain_s
        self._slots = asyncio.Semaphore(concurrency)
        self._running: dict[str, asyncio.Task[None]] = {}
        self._handling: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self.clock = engine.clock
        self.started_at = self.clock.now()

    @property
    def lease_s(self) -> float:
        return self.engine.settings.lease_s

    def stop(self) -> None:
        """Begins a drain: take nothing new, let in-flight runs finish (SIGTERM)."""
        self._stopping.set()

    async def run(self) -> None:
        """Works until `stop()`, then drains: finishes in-flight runs or hands them back."""
        duties = [
            asyncio.create_task(self._take_dispatches()),
            asyncio.create_task(self._sweep()),
            asyncio.create_task(self._heartbeat()),
        ]
        await self._stopping.wait()
        log.info("draining", in_flight=len(self._running))
        await self._beat("draining")  # `podium workers` shows it: taking nothing new
        failure = self.engine.failure
        # The dispatch loop waits on Redis and can be cancelled; the sweeper talks to the store,
        # so it stops between rounds (a query cancelled midway can wedge a pooled connection).
        duties[0].cancel()
        await wait_done(self.clock, list(self._running.values()), self.drain_s)
        duties[2].cancel()
        await asyncio.gather(*duties, return_exceptions=True)
        await self._beat("stopped")
        # Runs still in flight stay unfinished in the store; `Engine.shutdown` releases their
        # leases so another worker's sweeper resumes them at once (a rolling restart).
        if failure is not None:
            raise failure  # the store stayed down, or a duty died: exit non-zero, to be restarted

    async def _take_dispatches(self) -> None:
        claims: AsyncIterator[Dispatch] = self.bus.claims(self.engine.owner, self.lease_s)
        while True:
            await self._slots.acquire()  # pull-based: a full worker takes nothing
            try:
                dispatch = await anext(claims)
            except BaseException:
                self._slots.release()
                raise
            # Claiming costs a few store round trips: do it beside the next pull, not before.
            task = asyncio.create_task(self._handle(dispatch))
            self._handling.add(task)
            task.add_done_callback(self._handling.discard)

    async def _handle(self, dispatch: Dispatch) -> None:
        if dispatch.deliveries > self.max_deliveries:
            reason = f"delivered {dispatch.deliveries} times without finishing"
            log.error("poison dispatch", run_id=dispatch.run_id, reason=reason)
            await self.engine.fail_unrunnable(dispatch.run_id, f"poison: {reason}")
            await self.bus.dead_letter(dispatch, reason)
            self._slots.release()
            return
        try:
            claimed = await self.engine.recover([dispatch.run_id])
        except PodiumError as exc:  # the store is down: leave the dispatch for a retry
            log.warning("cannot claim a run", run_id=dispatch.run_id, error=str(exc))
            self._slots.release()
            return
        if claimed:
            self._watch(dispatch.run_id, dispatch)
            return
        self._slots.release()
        with contextlib.suppress(PodiumError):
            row = await self.store.get_run(dispatch.run_id)
            if row is None or row.done or row.owner is not None:
                # Finished, gone, or a live engine holds it: nothing left for this dispatch.
                await self.bus.ack(dispatch)

    async def _sweep(self) -> None:
        """Claims runs nobody holds (a lease ran out, or the bus lost their dispatch)."""
        while True:
            if await sleep_unless(self.clock, self._stopping, self.lease_s / 2):
                return
            try:
                await self.engine.expire_overdue()  # needs no slot: it runs no step
            except PodiumError as exc:
                log.warning("expiring overdue runs failed", error=str(exc))
            free = self._free_slots()
            if free <= 0:
                continue
            try:
                claimed = await self.engine.recover(limit=free)
            except PodiumError as exc:
                log.warning("sweeping the store failed", error=str(exc))
                continue
            for run_id in claimed:
                await self._slots.acquire()
                self._watch(run_id, None)

    def _free_slots(self) -> int:
        return self.concurrency - len(self._running)

    def _watch(self, run_id: str, dispatch: Dispatch | None) -> None:
        async def finish() -> None:
            try:
                await self.engine.wait_done(run_id)
                if dispatch is not None:
                    await self.bus.ack(dispatch)
            except PodiumError as exc:  # not acked: another worker takes the run over
                log.warning("run not finished here", run_id=run_id, error=str(exc))
            finally:
                self._running.pop(run_id, None)
                self._slots.release()

        self._running[run_id] = asyncio.create_task(finish())

    async def _heartbeat(self) -> None:
        while True:
            if self.engine.failure is not None:
                self.stop()  # nothing can be committed any more: drain and exit
                return
            await self._beat("draining" if self._stopping.is_set() else "running")
            await self.clock.sleep(self.heartbeat_s)

    async def _beat(self, state: str) -> None:
        info = WorkerInfo(
            worker_id=self.engine.owner, host=socket.gethostname(), pid=os.getpid(),
            concurrency=self.concurrency, active=len(self._running), state=state,
            started_at=self.started_at, heartbeat_at=self.clock.now(),
        )
        try:
            await self.store.heartbeat(info)
            await self.store.forget_workers(info.heartbeat_at - FORGOTTEN_AFTER_S)
        except Exception as exc:  # a missed heartbeat must not stop the work
            log.warning("heartbeat failed", error=str(exc))
