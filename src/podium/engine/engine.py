"""The engine: a thin shell around the run state machine (machine.py) that owns all I/O.

It feeds the machine what happened (a step finished, a timer fired, a cancel arrived), then
carries out the Effects it returns: journal them (committed before they take effect), start and
cancel step tasks, arm timers. The store/bus pair decides embedded vs distributed.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import os
import socket
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from secrets import token_hex
from typing import Any

import structlog

from podium.bus.base import Bus
from podium.clock import Clock, sleep_unless
from podium.control.admission import Admitted
from podium.control.budgets import RunBudget
from podium.control.plane import ControlPlane
from podium.engine.executor import StepExecutor
from podium.engine.holders import dead_here
from podium.engine.host import EngineHost
from podium.engine.journal import Journal
from podium.engine.machine import Effects, RunMachine, StepKey
from podium.engine.observers import BusPublisher, Observers, TraceContexts
from podium.engine.runtime import Compiled, RunRuntime
from podium.engine.summary import RunSummary, build_summary
from podium.engine.turns import TurnGuards
from podium.errors import EngineStopped, PodiumError, RunFinished, RunNotFound, StepError
from podium.events import SYSTEM_ACTOR, Actor, Event, audit_event, new_id
from podium.model.inputs import resolve_inputs
from podium.model.status import RunStatus, StepStatus
from podium.model.workflow import PRIORITY_RANK, Workflow
from podium.redact import Redactor
from podium.settings import Settings
from podium.steps import close_runners
from podium.store import codec
from podium.store.base import Store
from podium.store.records import RunState, StepState
from podium.store.spend import SpendRow
from podium.supervisor import Supervisor

log = structlog.get_logger("podium.engine")
_ADMITTED = Admitted()  # no `[resources]` bounds: every run fits
_FAILED = StepStatus.FAILED.value


@dataclass(eq=False)
class ActiveRun:
    """A run this engine holds: its state machine, and the tasks that carry out its effects."""

    machine: RunMachine
    done: asyncio.Future[None]
    tasks: dict[StepKey, asyncio.Task[None]] = field(default_factory=dict)
    timer: asyncio.Task[None] | None = None
    lost: bool = False  # another engine holds the run now: do nothing more for it
    # The machine's run and its id, fixed for the run's life: plain attributes, read per step.
    rt: RunRuntime = field(init=False)
    run_id: str = field(init=False)

    def __post_init__(self) -> None:
        self.rt = self.machine.run
        self.run_id = self.rt.row.run_id

    def drop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class Engine:
    """Runs workflows durably. Use as `async with Engine(store, bus) as engine:`."""

    def __init__(
        self,
        store: Store,
        bus: Bus,
        settings: Settings | None = None,
        *,
        secrets: Mapping[str, str] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.store = store
        # The time it keeps (leases, queue TTLs, timestamps, polls): the store's by default.
        self.clock = store.clock if clock is None else clock
        self.bus = bus
        self.settings = settings or Settings()
        # Unique per engine, not per process (new_id's tail is the process's): two engines in
        # one process hold leases and capacity shares apart.
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{token_hex(6)}"
        # The secrets steps may read ([secrets] allow); every value is masked in whatever the
        # engine writes (outputs, errors, events), hence in the store, the API and the CLI.
        self.secrets: Mapping[str, str] = dict(secrets or {})
        self.redactor = Redactor(self.secrets.values())
        # Every committed change reaches these, in commit order; the bus is the first.
        self.observers = Observers(BusPublisher(bus))
        self.journal = Journal(
            store, self.observers, self.owner, on_failure=self._store_failed,
            on_lost=self._lost, retry_s=self.settings.store_retry_s, redactor=self.redactor,
            clock=self.clock,
        )
        self.policy = self.settings.control.security.policy()
        # Streamed answers' deltas for live listeners (the API's run streams): never stored;
        # the bus carries them to the listeners of other processes if it can.
        self.transient = bus.transient(self.redactor)
        # Agent loops' model calls pass the control layer's guards one by one.
        self.turns = TurnGuards(self, self.clock)
        self.host = EngineHost(self, self.secrets, self.transient, self.turns)
        self.control = ControlPlane(
            self.settings.control, store, self.owner, self._emit_control, clock=self.clock
        )
        self.control.budgets.bind(
            self._run_budget, self.journal.after,
            hold_ttl_s=self.settings.lease_s, poll_s=self.settings.poll_interval_s,
        )
        self.control.bind_pools(self.settings.lease_s, on_capacity=self._pump)
        self._executor = StepExecutor(
            self,
            self.host,
            self.secrets,
            self.redactor,
            self.policy,
            self.settings.max_output_bytes,
            self.control,
            clock=self.clock,
            turns=self.turns,
        )
        self._compiled: dict[str, Compiled] = {}
        self._compiled_by_obj: dict[int, Compiled] = {}
        self._active: dict[str, ActiveRun] = {}
        self._nested: set[str] = set()  # child runs among the active: they take no slot
        self._queued: dict[str, ActiveRun] = {}
        self._queue: list[tuple[int, int, str]] = []
        self._fifo = itertools.count()
        self._resuming: set[str] = set()
        self._stopping = asyncio.Event()
        self._paused: set[tuple[str, str]] = set()  # ("workflow" | "agent", name)
        self._held: list[tuple[ActiveRun, StepState]] = []  # steps a pause keeps from starting
        # Every task the engine starts (steps, compensations, timers, background duties):
        # kept, named, failures logged; a background duty's unexpected end stops the engine.
        self.tasks = Supervisor("engine", on_fatal=self._duty_failed)
        self.halted = asyncio.Event()  # set when a background duty failed (see `failure`)
        self._background: list[asyncio.Task[None]] = []
        self._completions: dict[str, list[asyncio.Future[None]]] = {}
        self._completion_watch: asyncio.Task[None] | None = None
        self._ttl_s: dict[str, float] = self.settings.control.queue.ttl.model_dump()
        # How often the queue is scanned for overdue runs: often enough for the shortest TTL,
        # never more than once a second (a backlog of 10,000 runs is a 10,000-run scan).
        self._expiry_every_s = min(1.0, min(self._ttl_s.values()) / 2)
        self._expiry_scan_at = 0.0

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Engine:
        self._paused = set(await self.store.list_paused())
        await self.control.start()
        self._background = [
            self.tasks.start(self._renew_leases(), name="renew-leases", critical=True),
            self.tasks.start(self._poll_requests(), name="poll-requests", critical=True),
            self.tasks.start(self._tick_control(), name="tick-control", critical=True),
        ]
        if self.settings.control.deadlock.enabled:
            self._background.append(
                self.tasks.start(self._detect_deadlocks(), name="detect-deadlocks", critical=True)
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()
        fatal = self.tasks.fatal
        if exc[0] is None and fatal is not None:  # nobody learned of it yet: the caller does
            raise EngineStopped(self.tasks.fatal_task or "?", fatal) from fatal

    @property
    def failure(self) -> Exception | None:
        """Why the engine stopped for good, if it did: a store failure (nothing more can be
        committed) or a background duty's unexpected exception. A restart recovers its runs."""
        if self.journal.failure is not None:
            return self.journal.failure
        fatal = self.tasks.fatal
        if fatal is None:
            return None
        return EngineStopped(self.tasks.fatal_task or "?", fatal)

    def _duty_failed(self, duty: str, exc: BaseException) -> None:
        """A background duty died of an unexpected exception: the engine stops as after a
        store failure (runs stay in the store), and every waiter learns why."""
        self._stopping.set()
        self.halted.set()
        self._store_failed(EngineStopped(duty, exc))

    async def _pause_s(self, seconds: float) -> bool:
        """Sleeps between two rounds of a background duty; False once the engine stops."""
        return not await sleep_unless(self.clock, self._stopping, seconds)

    async def shutdown(self) -> None:
        """Stops without finishing runs: their committed state stays for `recover`."""
        # Background duties finish their round first: cancelling one in the middle of a store
        # query can leave a pooled connection stuck, and a pool that never closes.
        self._stopping.set()
        if self._background:
            await asyncio.wait(self._background, timeout=10)
        self._completion_watch = None
        # Step tasks, compensations, timers, the completion watchers and whatever duty is
        # left: cancelled and awaited, so nothing of this engine runs on after it.
        await self.tasks.close()
        self._background = []
        if self.journal.failure is None:
            await self.control.close()  # first: its last events go through the journal
            await self.journal.drain()
            await self.store.release_leases(self.owner)
        await close_runners()
        for run in [*self._active.values(), *self._queued.values()]:
            if not run.done.done():
                run.done.cancel()
        self._active.clear()
        self._queued.clear()

    def _store_failed(self, exc: Exception) -> None:
        """Nothing more can be committed: every waiter learns why instead of hanging.
        The runs stay unfinished in the store, and `recover` resumes them later."""
        for futures in self._completions.values():
            for future in futures:
                if not future.done():
                    future.set_exception(exc)
                    future.exception()  # retrieved: the waiter may have gone
        for run in [*self._active.values(), *self._queued.values()]:
            for task in list(run.tasks.values()):
                task.cancel()
            run.drop_timer()
            if not run.done.done():
                run.done.set_exception(exc)
                run.done.exception()  # marks it retrieved: nobody may be waiting on this run

    def _lost(self, run_ids: set[str]) -> None:
        """Another engine took these runs over (our lease ran out): drop them here at once,
        without writing anything more; their waiters learn the outcome from the store."""
        for run_id in run_ids:
            run = self._active.pop(run_id, None) or self._queued.pop(run_id, None)
            if run is None:
                continue
            run.drop_timer()
            for task in list(run.tasks.values()):
                task.cancel()
            run.lost = True
            self._nested.discard(run_id)
            self.control.admission.release(run_id)
            if not run.done.done():
                run.done.set_result(None)

    # -- public API ---------------------------------------------------------------------------

    async def submit(
        self,
        workflow: Workflow,
        inputs: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        parent_run_id: str | None = None,
        priority: str | None = None,
        trusted: bool = True,
        actor: Actor = SYSTEM_ACTOR,
        trace_parent: str | None = None,
    ) -> str:
        """Validates the inputs, commits the run as `queued` and returns its id. A given
        `run_id` must be new: a run is never overwritten by another submission. An untrusted
        run (of a definition from the API) runs under `[security]`'s rules. `trace_parent`
        (a W3C traceparent, kept with the run) is the span the run's trace hangs under."""
        values = resolve_inputs(workflow, inputs or {})
        if run_id is not None and (self.knows(run_id) or await self.store.get_run(run_id)):
            raise PodiumError(f"run {run_id} exists already; a run id names one run")
        compiled = self._compile(workflow)
        # A child of a run this engine runs belongs to its root's tree: admitted with it.
        nested = parent_run_id is not None and parent_run_id in self._active
        if self.control.admission.enabled and not nested:  # never runnable, or `reject`...
            self.control.admission.check_possible(workflow, compiled.plan)
            if workflow.on_constrained == "reject":
                await self.control.admission.check_free(workflow, compiled.plan)
        now = self.clock.now()
        row = RunState(
            run_id=run_id or new_id(),
            workflow=workflow.name,
            workflow_version=str(workflow.version),
            definition_digest=compiled.digest,
            inputs=values,
            priority=priority or workflow.priority,
            created_at=now,
            parent_run_id=parent_run_id,
            owner=self.owner,
            lease_until=now + self.settings.lease_s,
            trusted=trusted,
            trace_parent=trace_parent,
        )
        if self.bus.distributed and not nested:  # a worker takes it: nobody holds it till then
            row.owner, row.lease_until = None, None
        run = self._new_run(row, compiled, [])
        self.journal.definition(compiled.digest, compiled.body)
        self._apply(run, run.machine.queued(now, actor))
        if nested:
            self._start_nested(run)
            await self.journal.committed()
        else:
            await self._enqueue_or_dispatch(run)
        return row.run_id

    async def run(self, workflow: Workflow, inputs: Mapping[str, Any] | None = None) -> RunSummary:
        return await self.wait(await self.submit(workflow, inputs))

    async def wait_done(self, run_id: str) -> None:
        """Waits until the run is final (cheaper than `wait`: builds no summary)."""
        run = self._active.get(run_id) or self._queued.get(run_id)
        if run is not None:
            await asyncio.shield(run.done)
            if not run.lost:
                return
        # Another process runs it: the bus tells when it completes, and one poller asks the
        # store about every waited-for run at once (a bus restart can lose an event).
        row = await self.store.get_run(run_id)
        if row is None:
            raise RunNotFound(run_id)
        if row.done:
            return
        finished = self._completion_future(run_id)
        try:
            await asyncio.shield(finished)
        finally:
            waiters = self._completions.get(run_id)
            if waiters is not None and finished in waiters:
                waiters.remove(finished)
                if not waiters:
                    del self._completions[run_id]

    def _completion_future(self, run_id: str) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._completions.setdefault(run_id, []).append(future)
        if self._completion_watch is None:
            self._completion_watch = self.tasks.start(
                self._watch_completions(), name="watch-completions", critical=True
            )
            self._background.append(
                self.tasks.start(self._poll_completions(), name="poll-completions", critical=True)
            )
        return future

    def _completed(self, run_id: str) -> None:
        for future in self._completions.pop(run_id, []):
            if not future.done():
                future.set_result(None)

    async def _watch_completions(self) -> None:
        async for run_id in self.bus.completed_runs():
            self._completed(run_id)

    async def _poll_completions(self) -> None:
        while await self._pause_s(max(self.settings.poll_interval_s, 1.0)):
            if not self._completions:
                continue
            try:
                for run_id in await self.store.finished_runs(list(self._completions)):
                    self._completed(run_id)
            except PodiumError as exc:
                log.warning("polling for finished runs failed", error=str(exc))

    async def wait(self, run_id: str) -> RunSummary:
        await self.wait_done(run_id)
        return await self.summary(run_id)

    async def summary(self, run_id: str) -> RunSummary:
        row = await self.store.get_run(run_id)
        if row is None:
            raise RunNotFound(run_id)
        compiled = await self._compiled_for(row.definition_digest)
        return build_summary(row, compiled.plan.order, await self.store.get_steps(run_id))

    async def cancel(self, run_id: str, actor: Actor = SYSTEM_ACTOR) -> bool:
        """Cancels a run; False if another process runs it (it was asked to cancel). The
        audit entry naming `actor` commits with the change."""
        audit = audit_event(actor, "run.cancel", run_id, run_id=run_id)
        now = self.clock.now()
        if run_id in self._queued:
            run = self._queued.pop(run_id)
            self.journal.event(audit)
            reason = f"cancelled before it started by {actor.label}"
            self._apply(run, run.machine.end(now, RunStatus.CANCELLED, reason))
            return True
        if run_id in self._active:
            run = self._active[run_id]
            self.journal.event(audit)
            reason = f"cancelled by {actor.label}"
            self._apply(run, run.machine.stop(now, RunStatus.CANCELLED, reason, actor))
            return True
        row = await self._require_unfinished(run_id, "cancel")
        await self.store.request_cancel(row.run_id, audit=audit)
        return False

    async def signal(
        self, run_id: str, name: str, payload: Any = None, actor: Actor = SYSTEM_ACTOR
    ) -> None:
        """Delivers a signal; one sent before the step waits is kept for it."""
        await self._require_unfinished(run_id, "signal")
        audit = audit_event(actor, "run.signal", run_id, run_id=run_id, signal=name)
        await self.store.add_signal(run_id, name, payload, audit=audit)
        await self.host.deliver_signals([run_id])

    async def recover(
        self, run_ids: Sequence[str] | None = None, *, limit: int | None = None
    ) -> list[str]:
        """Resumes unfinished runs nobody holds (at most `limit`); returns their ids. Runs held
        by a dead process of this host are taken over at once, not when its lease runs out."""
        await self.release_dead_holders(run_ids)
        claimed = await self.store.claim_unfinished(
            self.owner, self.settings.lease_s, run_ids, limit=limit
        )
        resumed = []
        for run_id in claimed:
            # Two callers here (a worker's dispatch and its sweeper) may claim the same run:
            # the claim accepts our own lease, so only this set keeps one runtime per run.
            if self.knows(run_id) or run_id in self._resuming:
                continue
            self._resuming.add(run_id)
            try:
                await self._resume(run_id)
            finally:
                self._resuming.discard(run_id)
            resumed.append(run_id)
        return resumed

    async def release_dead_holders(self, run_ids: Sequence[str] | None = None) -> list[str]:
        """Frees the leases of engines of this host whose process is gone; returns their ids."""
        dead = [h.owner for h in await self.store.lease_holders(run_ids) if dead_here(h.owner)]
        for owner in dead:
            log.info("taking over the runs of a dead process", owner=owner)
            await self.store.release_leases(owner)
        return dead

    async def replay(self, run_id: str, actor: Actor = SYSTEM_ACTOR) -> None:
        """Re-runs a dead-lettered run from its failed steps, reusing succeeded outputs."""
        if await self.store.get_dlq(run_id) is None:
            raise PodiumError(f"run {run_id} is not in the dead-letter queue; `podium dlq list`")
        row = await self.store.get_run(run_id)
        if row is None:
            raise RunNotFound(run_id)
        compiled = await self._compiled_for(row.definition_digest)
        states = [s for s in await self.store.get_steps(run_id) if s.status == "succeeded"]
        claimed = await self.store.claim_for_replay(self.owner, self.settings.lease_s, run_id)
        if not claimed:
            raise PodiumError(f"run {run_id} is being replayed by another process already")
        row.owner, row.lease_until = self.owner, self.clock.now() + self.settings.lease_s
        if self.bus.distributed:
            row.owner, row.lease_until = None, None
        run = self._new_run(row, compiled, states)
        self.journal.undead(run_id)
        self.journal.event(audit_event(actor, "dlq.replay", run_id, run_id=run_id))
        self._apply(run, run.machine.replayed(self.clock.now(), actor))
        await self._enqueue_or_dispatch(run)

    def active_runs(self) -> list[str]:
        return list(self._active)

    async def fail_unrunnable(self, run_id: str, reason: str) -> None:
        """Ends a run that cannot be run at all (a poison dispatch): failed, dead-lettered."""
        if not await self.store.claim_unfinished(self.owner, self.settings.lease_s, [run_id]):
            return
        row = await self.store.get_run(run_id)
        if row is None:
            return
        compiled = await self._compiled_for(row.definition_digest)
        run = self._new_run(row, compiled, await self.store.get_steps(run_id))
        self._apply(run, run.machine.end(self.clock.now(), RunStatus.FAILED, reason))
        await self.journal.committed()

    async def _enqueue_or_dispatch(self, run: ActiveRun) -> None:
        if not self.bus.distributed:
            self._enqueue(run)
            await self.journal.committed()
            return
        await self.journal.committed()
        await self.bus.dispatch(run.run_id, run.rt.row.priority)

    # -- carrying out the machine's effects ------------------------------------------------------

    def _apply(self, run: ActiveRun, fx: Effects) -> None:
        """Journals what the machine decided, then acts on it: what acts on the world waits
        for the commit (a step starts only once it is durably `running`), except cancelling."""
        self._journal(run.rt, fx)
        journal = self.journal
        for key in fx.cancel:
            task = run.tasks.pop(key, None)
            if task is not None:
                task.cancel()
        for st in fx.start:
            journal.after(partial(self._spawn, run, st))
        if fx.held:
            self._held.extend((run, st) for st in fx.held)
        if fx.arm_at is not None:
            self._arm(run, fx.arm_at)
        if fx.compensate:
            journal.after(partial(self._start_compensation, run, fx.compensate))
        if fx.finished:
            run.drop_timer()
            journal.after(partial(self._retire, run))
        elif fx.disarm:
            run.drop_timer()

    def _journal(self, rt: RunRuntime, fx: Effects) -> None:
        journal = self.journal
        if fx.run:
            journal.run(rt.row)
        for st in fx.steps.values():
            journal.step(st)
        for event_type, payload, actor in fx.notices:
            self._emit(rt, event_type, payload, actor)
        journal.transitions(fx.transitions)
        for transition in fx.transitions:
            if transition.target == _FAILED and transition.step_id is not None:
                self._log_failure(fx.steps[(transition.step_id, transition.index)])
        if fx.spend or fx.signals_taken or fx.dead_letter:
            for row in fx.spend:
                journal.spend(row)
            for signal_id in fx.signals_taken:
                journal.signal_taken(signal_id)
            if fx.dead_letter is not None:
                journal.dead_letter(fx.dead_letter)

    def _log_failure(self, st: StepState) -> None:
        redact = self.redactor
        log.warning(
            "step failed", run_id=st.run_id, step=st.step_id, index=st.index,
            attempt=st.attempts, error=st.error and redact.text(st.error),
            error_type=st.error_type, traceback=st.traceback and redact.text(st.traceback),
        )

    def _arm(self, run: ActiveRun, deadline: float) -> None:
        run.drop_timer()
        run.timer = self.tasks.start(self._time_out(run, deadline), name=f"timeout:{run.run_id}")

    async def _time_out(self, run: ActiveRun, deadline: float) -> None:
        await self.clock.sleep(deadline - self.clock.now())
        run.timer = None  # this task is ending: nothing left to cancel
        if run.lost or run.rt.row.done:
            return
        limit = run.rt.workflow.timeout_s or 0.0
        reason = f"the run timed out after {limit:g}s"
        self._apply(run, run.machine.stop(self.clock.now(), RunStatus.TIMED_OUT, reason))

    def _spawn(self, run: ActiveRun, st: StepState) -> None:
        if st.status == StepStatus.RUNNING and not run.rt.row.done and not run.lost:
            name = f"step:{run.run_id}/{st.step_id}" + (f"[{st.index}]" if st.index >= 0 else "")
            run.tasks[(st.step_id, st.index)] = self.tasks.start(self._execute(run, st), name=name)

    async def _execute(self, run: ActiveRun, st: StepState) -> None:
        step = run.rt.compiled.step(st.step_id)
        try:
            outcome = await self._executor.run_step(run.rt, st, step)
        finally:
            run.tasks.pop((st.step_id, st.index), None)
        if not run.lost:
            self._apply(run, run.machine.finished(self.clock.now(), st, outcome))

    def _start_compensation(self, run: ActiveRun, states: list[StepState]) -> None:
        if not run.lost:
            self.tasks.start(self._compensate(run, states), name=f"compensate:{run.run_id}")

    async def _compensate(self, run: ActiveRun, states: list[StepState]) -> None:
        """Saga: undo succeeded steps in reverse completion order; one failure stops nothing."""
        for st in states:
            step = run.rt.compiled.step(st.step_id)
            self._apply(run, run.machine.note(
                "agent.task.compensating", {"step": st.step_id, "index": st.index}
            ))
            outcome = await self._executor.run_compensation(run.rt, st, step)
            if run.lost:
                return
            self._apply(run, run.machine.compensated(self.clock.now(), st, outcome))
            await self.journal.committed()
        if not run.lost:
            self._apply(run, run.machine.compensation_done(self.clock.now()))

    def _retire(self, run: ActiveRun) -> None:
        self._active.pop(run.run_id, None)
        self._nested.discard(run.run_id)
        self.control.admission.release(run.run_id)
        if not run.done.done():
            run.done.set_result(None)
        self._pump()

    # -- what the executor reports between attempts (executor.AttemptReporter) ---------------

    def retrying(
        self, rt: RunRuntime, st: StepState, attempt: int, error: StepError, delay_s: float
    ) -> None:
        run = self._holding(rt)
        if run is not None:
            self._apply(run, run.machine.retrying(self.clock.now(), st, attempt, error, delay_s))

    async def next_attempt(self, rt: RunRuntime, st: StepState, attempt: int) -> None:
        run = self._holding(rt)
        if run is not None:
            self._apply(run, run.machine.next_attempt(self.clock.now(), st, attempt))
            await self.journal.committed()

    def waiting_for_slot(self, rt: RunRuntime, st: StepState, attempt: int) -> None:
        run = self._holding(rt)
        if run is not None:
            self._apply(run, run.machine.waiting_for_slot(self.clock.now(), st, attempt))

    def got_slot(self, rt: RunRuntime, st: StepState, attempt: int) -> None:
        run = self._holding(rt)
        if run is not None:
            self._apply(run, run.machine.got_slot(self.clock.now(), st, attempt))

    def falling_back(self, rt: RunRuntime, st: StepState, error: StepError) -> None:
        run = self._holding(rt)
        if run is not None:
            self._apply(run, run.machine.falling_back(self.clock.now(), st, error))

    def waited(
        self, rt: RunRuntime, st: StepState, attempt: int, guard: str, waited_s: float
    ) -> None:
        run = self._holding(rt)
        if run is not None:
            self._apply(run, run.machine.note("agent.task.waited", {
                "step": st.step_id, "index": st.index, "attempt": attempt, "guard": guard,
                "waited_s": round(waited_s, 6),
            }))

    def trace_attempts(self, contexts: TraceContexts) -> None:
        """Steps' outgoing requests carry their attempt's trace context, from `contexts`."""
        self._executor.trace_contexts = contexts

    def spent(self, row: SpendRow) -> None:
        # Booked even after the run ended (a call abandoned by a cancel): the fence keeps it
        # only while this engine holds the run.
        self.journal.spend(row)
        run = self._active.get(row.run_id)
        if run is not None:  # the run's budget sees it now, between an agent loop's turns
            run.rt.booked.booked(row.usd, row.tokens_in, row.tokens_out)

    def linger(self, work: Coroutine[Any, Any, None], name: str) -> None:
        self.tasks.start(work, name=name)

    def _holding(self, rt: RunRuntime) -> ActiveRun | None:
        run = self._active.get(rt.run_id)
        return run if run is not None and run.rt is rt and not run.lost else None

    # -- queue -----------------------------------------------------------------------------

    def _enqueue(self, run: ActiveRun) -> None:
        self._queued[run.run_id] = run
        rank = PRIORITY_RANK[run.rt.row.priority]
        heapq.heappush(self._queue, (rank, next(self._fifo), run.run_id))
        self.journal.after(self._pump)

    def _pump(self) -> None:
        now = self.clock.now()
        while self._queue and len(self._active) - len(self._nested) < self.settings.max_active_runs:
            rank, seq, run_id = heapq.heappop(self._queue)
            run = self._queued.pop(run_id, None)
            if run is None:  # a queued run cancelled (or expired) meanwhile is gone from _queued
                continue
            row = run.rt.row
            if now - row.created_at > self._ttl_s[row.priority]:
                self._expire(run, now)
                continue
            admitted = self._admit(run)
            if admitted is None:  # its resources are not free: the head of the queue waits
                self._queued[run_id] = run
                heapq.heappush(self._queue, (rank, seq, run_id))
                return
            self._active[run_id] = run
            self._apply(run, run.machine.start(now, admitted.dropped, admitted.reason))

    def _start_nested(self, run: ActiveRun) -> None:
        """Starts a child run at once: it takes no active-run slot and no resources of its
        own (its root holds the tree's), so it never waits behind capacity its ancestors hold."""
        self._queued.pop(run.run_id, None)
        self._active[run.run_id] = run
        self._nested.add(run.run_id)
        self._apply(run, run.machine.start(self.clock.now()))

    def _expire(self, run: ActiveRun, now: float) -> None:
        """Ends a run that waited in the queue past its priority's TTL."""
        self._queued.pop(run.run_id, None)
        self._active[run.run_id] = run  # until _retire, like any run that finishes
        self._apply(run, run.machine.expire(now, self._ttl_s[run.rt.row.priority]))

    def _expire_queued(self) -> None:
        """Expires overdue runs still waiting in this engine's queue (nothing pumps them)."""
        now = self.clock.now()
        oldest_allowed = {p: now - ttl for p, ttl in self._ttl_s.items()}
        overdue = [
            run for run in self._queued.values()
            if run.rt.row.created_at < oldest_allowed[run.rt.row.priority]
        ]
        for run in overdue:
            self._expire(run, now)

    async def expire_overdue(self, limit: int = 500) -> list[str]:
        """Expires queued runs in the store that nobody holds and that waited past their
        TTL (distributed mode: their dispatch may sit behind a backlog); returns them."""
        overdue = await self.store.overdue_queued(self._ttl_s, limit)
        expired = []
        for run_id in await self.store.claim_unfinished(
            self.owner, self.settings.lease_s, overdue
        ):
            row = await self.store.get_run(run_id)
            if row is None or row.status != RunStatus.QUEUED or self.knows(run_id):
                continue
            compiled = await self._compiled_for(row.definition_digest)
            self._expire(self._new_run(row, compiled, []), self.clock.now())
            expired.append(run_id)
        await self.journal.committed()
        return expired

    def _admit(self, run: ActiveRun) -> Admitted | None:
        """Takes the run's peak resources from this engine's shares (None: not free yet);
        `degrade` may drop its optional steps to fit (the machine skips them)."""
        admission = self.control.admission
        if not admission.enabled:
            return _ADMITTED
        return admission.admit(run.run_id, run.rt.workflow, run.rt.compiled.plan)

    # -- recovery ---------------------------------------------------------------------------

    async def _resume(self, run_id: str) -> None:
        row = await self.store.get_run(run_id)
        if row is None or row.done:
            return
        compiled = await self._compiled_for(row.definition_digest)
        run = self._new_run(row, compiled, await self.store.get_steps(run_id))
        nested = row.parent_run_id is not None
        if row.status == RunStatus.QUEUED:
            if nested:
                self._start_nested(run)
            else:
                self._enqueue(run)
            return
        self._active[run_id] = run
        if nested:
            self._nested.add(run_id)
        elif self.control.admission.enabled:  # admitted before: takes its resources back
            self.control.admission.hold(run_id, compiled.workflow, compiled.plan)
        self._apply(run, run.machine.resume(self.clock.now(), self.owner))

    def _new_run(self, row: RunState, compiled: Compiled, states: list[StepState]) -> ActiveRun:
        steps = {sid: StepState(row.run_id, sid) for sid in compiled.plan.order}
        rt = RunRuntime(row, compiled, steps)
        for state in states:
            if state.output_blob is not None:
                state.output = codec.decode(state.output_blob)
            if state.index < 0:
                rt.steps[state.step_id] = state
            else:
                rt.instances.setdefault(state.step_id, []).append(state)
        for instances in rt.instances.values():
            instances.sort(key=lambda s: s.index)
        rt.completed = max((s.completed_seq or 0 for s in states), default=0)
        machine = RunMachine(rt, paused=self._is_paused, encode=self._executor.encode)
        return ActiveRun(machine, asyncio.get_running_loop().create_future())

    def _compile(self, workflow: Workflow) -> Compiled:
        compiled = self._compiled_by_obj.get(id(workflow))
        if compiled is None or compiled.workflow is not workflow:
            compiled = Compiled.of(workflow)
            compiled = self._compiled.setdefault(compiled.digest, compiled)
            self._compiled_by_obj[id(workflow)] = compiled
            self.control.prepare(compiled.workflow)  # turns on the guards its steps need
        return compiled

    async def _compiled_for(self, digest: str) -> Compiled:
        compiled = self._compiled.get(digest)
        if compiled is None:
            workflow = Workflow.model_validate(await self.store.get_definition(digest))
            compiled = self._compiled.setdefault(digest, Compiled.of(workflow))
            self.control.prepare(compiled.workflow)
        return compiled

    async def _require_unfinished(self, run_id: str, action: str) -> RunState:
        run = self._active.get(run_id) or self._queued.get(run_id)
        row = run.rt.row if run is not None else await self.store.get_run(run_id)
        if row is None:
            raise RunNotFound(run_id)
        if row.done:
            raise RunFinished(run_id, row.status, action)
        return row

    def _run_budget(self, run_id: str) -> RunBudget | None:
        """A run's budget and spend so far, for the budget guard (None: no budget, or the run
        is not running here)."""
        run = self._active.get(run_id)
        budget = run.rt.workflow.budget if run is not None else None
        if run is None or budget is None or budget.usd is None:
            return None
        return RunBudget(budget, run.rt.spent_usd())

    # -- background duties --------------------------------------------------------------------

    async def _renew_leases(self) -> None:
        # A broken engine lets its leases run out.
        while self.journal.failure is None and await self._pause_s(self.settings.lease_s / 3):
            if self._active or self._queued:
                try:
                    await self.store.renew_leases(self.owner, self.settings.lease_s)
                except PodiumError as exc:
                    log.warning("renewing leases failed", error=str(exc))

    async def _poll_requests(self) -> None:
        """Picks up cancels and signals that other processes wrote to the store."""
        while await self._pause_s(self.settings.poll_interval_s):
            try:
                if self._active or self._queued:
                    for run_id in await self.store.cancel_requests(list(self._active)):
                        await self.cancel(run_id)
                await self.host.deliver_signals(self.host.waiting_runs())
                self._set_pauses(set(await self.store.list_paused()))
            except PodiumError as exc:
                log.warning("polling the store failed", error=str(exc))

    async def _tick_control(self) -> None:
        while await self._pause_s(self.settings.poll_interval_s):
            now = self.clock.monotonic()
            if self._queued and now >= self._expiry_scan_at:
                self._expiry_scan_at = now + self._expiry_every_s
                self._expire_queued()
            await self.control.tick()

    async def _detect_deadlocks(self) -> None:
        # A broken cycle's victim fails inside its step task, so the machine hears of it as
        # of any step failure (control/deadlocks.py).
        while await self._pause_s(self.settings.control.deadlock.check_every):
            await self.control.deadlocks.tick()

    # -- pauses (the operator's brake) ------------------------------------------------------

    async def pause(
        self, scope: str, name: str, paused: bool = True, actor: Actor = SYSTEM_ACTOR
    ) -> bool:
        """Stops (or lets go again) new steps of a workflow or an agent; in-flight ones finish.
        Every engine on the store picks it up within its poll interval."""
        if scope not in ("workflow", "agent"):
            raise PodiumError(f"can pause a workflow or an agent, not {scope!r}")
        action = "pause.set" if paused else "pause.clear"
        audit = audit_event(actor, action, f"{scope}:{name}")
        changed = await self.store.set_paused(scope, name, paused, audit=audit)
        self._set_pauses(set(await self.store.list_paused()))
        return changed

    def _is_paused(self, workflow: str, agent: str | None) -> bool:
        paused = self._paused
        return bool(paused) and (
            ("workflow", workflow) in paused or (agent is not None and ("agent", agent) in paused)
        )

    def _set_pauses(self, paused: set[tuple[str, str]]) -> None:
        self._paused = paused
        held, self._held = self._held, []
        now = self.clock.now()
        for run, st in held:
            if not run.lost and self.knows(run.run_id):
                self._apply(run, run.machine.release(now, st))

    # -- for EngineHost -------------------------------------------------------------------------

    def runtime(self, run_id: str) -> RunRuntime:
        return self._active[run_id].rt

    def held(self, run_id: str) -> RunRuntime | None:
        """The runtime of a run this engine runs or queues, else None (for observers)."""
        run = self._active.get(run_id) or self._queued.get(run_id)
        return None if run is None else run.rt

    def knows(self, run_id: str) -> bool:
        """True if this engine runs or queues the run."""
        return run_id in self._active or run_id in self._queued

    async def definition(self, digest: str) -> Workflow:
        return (await self._compiled_for(digest)).workflow

    def emit_for(self, run_id: str, event_type: str, payload: dict[str, Any]) -> None:
        run = self._active[run_id]
        self._apply(run, run.machine.note(event_type, payload))

    # -- events ------------------------------------------------------------------------------

    def _emit_control(self, run_id: str, event_type: str, payload: dict[str, Any]) -> None:
        """A control-layer event: in the run's chain when this engine runs it, else alone."""
        run = self._active.get(run_id)
        if run is not None:
            self._apply(run, run.machine.note(event_type, payload))
            return
        self.journal.event(Event(event_type=event_type, correlation_id=run_id, payload=payload))

    def _emit(
        self, rt: RunRuntime, event_type: str, payload: dict[str, Any], actor: Actor
    ) -> None:
        event = Event(
            event_type=event_type,
            correlation_id=rt.row.run_id,
            payload=payload,
            causation_id=rt.last_event_id,
            priority=rt.row.priority,
            actor=actor.label,
        )
        rt.last_event_id = event.event_id
        self.journal.event(event)
