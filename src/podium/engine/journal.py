"""Group commit: state changes made during one loop turn are committed in one transaction.

After the commit, the observers see the batch's events and transitions, then its follow-up
actions run, in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

import structlog

from podium.clock import SYSTEM_CLOCK, Clock
from podium.engine.observers import Commit, Observers
from podium.engine.transitions import Transition
from podium.errors import StoreUnavailable
from podium.events import Event
from podium.redact import Redactor
from podium.store.base import Store
from podium.store.records import Batch, DlqEntry, RunState, StepState
from podium.store.spend import SpendRow

log = structlog.get_logger("podium.journal")


class Journal:
    def __init__(
        self,
        store: Store,
        observers: Observers,
        owner: str,
        on_failure: Callable[[Exception], None],
        on_lost: Callable[[set[str]], None],
        retry_s: float = 60.0,
        redactor: Redactor | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._clock = clock
        self._redactor = redactor or Redactor()
        self._store = store
        self._owner = owner
        self._on_failure = on_failure
        self._on_lost = on_lost
        self._observers = observers
        self._batch = Batch(owner=owner)
        self._transitions: list[Transition] = []
        self._after: list[Callable[[], None]] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._scheduled = False
        self.retry_s = retry_s  # how long a failing store may take to come back
        self.failure: Exception | None = None  # a store error stops the engine; restart recovers

    def run(self, run: RunState) -> None:
        if self._redactor and run.error:
            run.error = self._redactor.text(run.error)
        self._batch.runs[run.run_id] = run
        self._schedule()

    def step(self, step: StepState) -> None:
        if self._redactor:
            step.error = step.error and self._redactor.text(step.error)
            step.traceback = step.traceback and self._redactor.text(step.traceback)
            step.compensation_error = (
                step.compensation_error and self._redactor.text(step.compensation_error)
            )
        self._batch.steps[step.key] = step
        self._schedule()

    def event(self, event: Event) -> None:
        if self._redactor:  # errors and outputs quoted in payloads
            event.payload = self._redactor.value(event.payload)
        self._batch.events.append(event)
        self._schedule()

    def transitions(self, transitions: Iterable[Transition]) -> None:
        """Status changes made in this batch, for the observers (the rows carry the state)."""
        self._transitions.extend(transitions)

    def definition(self, digest: str, body: bytes) -> None:
        self._batch.definitions[digest] = body
        self._schedule()

    def dead_letter(self, entry: DlqEntry) -> None:
        self._batch.dlq_add.append(entry)
        self._schedule()

    def undead(self, run_id: str) -> None:
        self._batch.dlq_remove.append(run_id)
        self._schedule()

    def signal_taken(self, signal_id: int) -> None:
        self._batch.signals_taken.append(signal_id)
        self._schedule()

    def spend(self, row: SpendRow) -> None:
        self._batch.spend.append(row)
        self._schedule()

    def after(self, action: Callable[[], None]) -> None:
        """Runs `action` once everything recorded so far is committed."""
        self._after.append(action)
        self._schedule()

    def committed(self) -> asyncio.Future[None]:
        """A future that resolves once everything recorded so far is committed."""
        future = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        self._schedule()
        return future

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._kick)

    def _kick(self) -> None:
        self._scheduled = False
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        while self._batch or self._after or self._waiters:
            batch, after, waiters = self._batch, self._after, self._waiters
            transitions, self._transitions = self._transitions, []
            self._batch, self._after, self._waiters = Batch(owner=self._owner), [], []
            await self._commit(batch)
            if self.failure is None:
                self._follow_up(Commit(batch.events, transitions, batch.spend), after)
            for waiter in waiters:
                if waiter.done():
                    continue
                if self.failure is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(self.failure)

    async def _commit(self, batch: Batch) -> None:
        if self.failure is not None or not batch:
            return
        try:
            lost = await self._write_retrying(batch)
        except Exception as exc:  # permanent, or transient past the retries: it is fatal
            kind = type(exc).__name__
            log.error("store write failed; the engine stops", error=str(exc), error_type=kind)
            self.failure = exc
            self._on_failure(exc)
            return
        if lost:
            log.warning("lost the lease of runs; another engine holds them now", runs=len(lost))
            self._on_lost(lost)

    async def _write_retrying(self, batch: Batch) -> set[str]:
        """Writes the batch, riding out a store restart: nothing moves on until it is in.

        Retrying is safe: a batch is upserts keyed by run and step, and events by their id.
        Only transient errors (StoreUnavailable) are retried; a permanent StoreError (a
        constraint violated, a closed store) propagates at once.
        """
        delay_s, deadline = 0.2, self._clock.monotonic() + self.retry_s
        while True:
            try:
                # Shielded: cancelling the engine must not cut a commit in half.
                return await asyncio.shield(self._store.write(batch))
            except StoreUnavailable as exc:
                if self._clock.monotonic() + delay_s > deadline:
                    raise
                log.warning("store write failed; retrying", error=str(exc), retry_in_s=delay_s)
                await self._clock.sleep(delay_s)
                delay_s = min(delay_s * 2, 5.0)

    def _follow_up(self, commit: Commit, after: list[Callable[[], None]]) -> None:
        if commit.events or commit.transitions or commit.spend:
            self._observers.notify(commit)
        for action in after:
            try:
                action()
            except Exception:  # one bad follow-up must not stall every other run
                log.exception("follow-up action failed")

    async def drain(self) -> None:
        """Waits until everything recorded so far is committed."""
        await self.committed()
