"""The durable run state machine (DESIGN §3): what becomes ready, failure handling, recovery.

Every change is recorded in the journal (committed before it takes effect); step bodies start
only after the commit that marked them running. The store/bus pair decides embedded vs distributed.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import os
import socket
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from secrets import token_hex
from typing import Any

import structlog

from podium.bus.base import Bus
from podium.clock import Clock, sleep_unless
from podium.control.admission import Admitted
from podium.control.budgets import RunBudget
from podium.control.plane import ControlPlane
from podium.engine.executor import Outcome, StepExecutor
from podium.engine.host import EngineHost
from podium.engine.journal import Journal
from podium.engine.rules import CLEANUP_TRIGGERS, Gate, final_status, trigger_gate
from podium.engine.runtime import Compiled, RunRuntime
from podium.engine.summary import RunSummary, build_summary
from podium.errors import (
    EngineStopped,
    ExpressionError,
    PodiumError,
    RunFinished,
    RunNotFound,
    StepError,
)
from podium.events import SYSTEM_ACTOR, Actor, Event, audit_event, new_id
from podium.model.expressions import render
from podium.model.inputs import resolve_inputs
from podium.model.workflow import PRIORITY_RANK, Step, Workflow
from podium.redact import Redactor
from podium.settings import Settings
from podium.steps import StepResult, close_runners
from podium.store import codec
from podium.store.base import Store
from podium.store.records import RUN_DEAD, DlqEntry, RunState, StepState
from podium.store.spend import SpendRow
from podium.supervisor import Supervisor

log = structlog.get_logger("podium.engine")
_OPEN = frozenset({"pending", "ready", "running"})
_ADMITTED = Admitted()  # no `[resources]` bounds: every run fits


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
        self.journal = Journal(
            store, bus, self.owner, on_failure=self._store_failed, on_lost=self._lost,
            retry_s=self.settings.store_retry_s, redactor=self.redactor, clock=self.clock,
        )
        self.policy = self.settings.control.security.policy()
        self.host = EngineHost(self, self.secrets)
        self.control = ControlPlane(
            self.settings.control, store, self.owner, self._emit_control, clock=self.clock
        )
        self.control.budgets.bind(
            self._run_budget, self.journal.after,
            hold_ttl_s=self.settings.lease_s, poll_s=self.settings.poll_interval_s,
        )
        self.control.bind_pools(self.settings.lease_s, on_capacity=self._pump)
        self._executor = StepExecutor(
            self.journal,
            self._emit,
            self.host,
            self.secrets,
            self.redactor,
            self.policy,
            self.settings.max_output_bytes,
            self.control,
            clock=self.clock,
        )
        self._compiled: dict[str, Compiled] = {}
        self._compiled_by_obj: dict[int, Compiled] = {}
        self._active: dict[str, RunRuntime] = {}
        self._queued: dict[str, RunRuntime] = {}
        self._queue: list[tuple[int, int, str]] = []
        self._fifo = itertools.count()
        self._resuming: set[str] = set()
        self._stopping = asyncio.Event()
        self._paused: set[tuple[str, str]] = set()  # ("workflow" | "agent", name)
        self._held: list[tuple[RunRuntime, StepState]] = []  # steps a pause keeps from starting
        # Every task the engine starts (steps, compensations, background duties): kept,
        # named, failures logged; a background duty's unexpected end stops the engine.
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
        for rt in list(self._active.values()):
            if rt.timer:
                rt.timer.cancel()
        # Step tasks, compensations, the completion watchers and whatever duty is left:
        # cancelled and awaited, so nothing of this engine runs on after it.
        await self.tasks.close()
        self._background = []
        if self.journal.failure is None:
            await self.control.close()  # first: its last events go through the journal
            await self.journal.drain()
            await self.store.release_leases(self.owner)
        await close_runners()
        for rt in [*self._active.values(), *self._queued.values()]:
            if rt.done and not rt.done.done():
                rt.done.cancel()
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
        for rt in [*self._active.values(), *self._queued.values()]:
            for task in list(rt.tasks.values()):
                task.cancel()
            if rt.done is not None and not rt.done.done():
                rt.done.set_exception(exc)
                rt.done.exception()  # marks it retrieved: nobody may be waiting on this run

    def _lost(self, run_ids: set[str]) -> None:
        """Another engine took these runs over (our lease ran out): drop them here at once,
        without writing anything more; their waiters learn the outcome from the store."""
        for run_id in run_ids:
            rt = self._active.pop(run_id, None) or self._queued.pop(run_id, None)
            if rt is None:
                continue
            if rt.timer is not None:
                rt.timer.cancel()
            for task in list(rt.tasks.values()):
                task.cancel()
            rt.lost = True
            self.control.admission.release(run_id)
            if rt.done is not None and not rt.done.done():
                rt.done.set_result(None)

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
    ) -> str:
        """Validates the inputs, commits the run as `queued` and returns its id. A given
        `run_id` must be new: a run is never overwritten by another submission. An untrusted
        run (of a definition from the API) runs under `[security]`'s rules."""
        values = resolve_inputs(workflow, inputs or {})
        if run_id is not None and (self.knows(run_id) or await self.store.get_run(run_id)):
            raise PodiumError(f"run {run_id} exists already; a run id names one run")
        compiled = self._compile(workflow)
        if self.control.admission.enabled:  # never runnable, or `reject` and not free now
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
        )
        if self.bus.distributed:  # a worker takes it: nobody holds it until then
            row.owner, row.lease_until = None, None
        rt = self._runtime(row, compiled, [])
        self.journal.definition(compiled.digest, compiled.body)
        self.journal.run(row)
        payload = {"workflow": row.workflow, "priority": row.priority}
        self._emit(rt, "run.queued", payload, actor=actor)
        await self._enqueue_or_dispatch(rt)
        return row.run_id

    async def run(self, workflow: Workflow, inputs: Mapping[str, Any] | None = None) -> RunSummary:
        return await self.wait(await self.submit(workflow, inputs))

    async def wait_done(self, run_id: str) -> None:
        """Waits until the run is final (cheaper than `wait`: builds no summary)."""
        rt = self._active.get(run_id) or self._queued.get(run_id)
        if rt is not None and rt.done is not None:
            await asyncio.shield(rt.done)
            if not rt.lost:
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
        if run_id in self._queued:
            rt = self._queued.pop(run_id)
            rt.row.status, rt.row.finished_at = "cancelled", self.clock.now()
            rt.row.error = f"cancelled before it started by {actor.label}"
            self.journal.event(audit)
            self._finalize(rt)
            return True
        if run_id in self._active:
            self.journal.event(audit)
            self._stop(self._active[run_id], "cancelled", f"cancelled by {actor.label}", actor)
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
        """Resumes unfinished runs nobody holds (at most `limit`); returns their ids."""
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
        row.status, row.stopping, row.error, row.finished_at = "queued", None, None, None
        row.created_at = self.clock.now()  # queued anew: its queue TTL counts from now
        row.owner, row.lease_until = self.owner, self.clock.now() + self.settings.lease_s
        if self.bus.distributed:
            row.owner, row.lease_until = None, None
        rt = self._runtime(row, compiled, states)
        for state in rt.all_states():
            self.journal.step(state)  # rewrites the reset rows as pending
        self.journal.run(row)
        self.journal.undead(run_id)
        self.journal.event(audit_event(actor, "dlq.replay", run_id, run_id=run_id))
        kept = sorted({s.step_id for s in states})
        self._emit(rt, "run.replayed", {"kept_steps": kept}, actor=actor)
        await self._enqueue_or_dispatch(rt)

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
        rt = self._runtime(row, compiled, await self.store.get_steps(run_id))
        row.status, row.error = "failed", reason
        self._finalize(rt)
        await self.journal.committed()

    async def _enqueue_or_dispatch(self, rt: RunRuntime) -> None:
        if not self.bus.distributed:
            self._enqueue(rt)
            await self.journal.committed()
            return
        await self.journal.committed()
        await self.bus.dispatch(rt.run_id, rt.row.priority)

    # -- queue -----------------------------------------------------------------------------

    def _enqueue(self, rt: RunRuntime) -> None:
        self._queued[rt.run_id] = rt
        heapq.heappush(self._queue, (PRIORITY_RANK[rt.row.priority], next(self._fifo), rt.run_id))
        self.journal.after(self._pump)

    def _pump(self) -> None:
        now = self.clock.now()
        while self._queue and len(self._active) < self.settings.max_active_runs:
            rank, seq, run_id = heapq.heappop(self._queue)
            rt = self._queued.pop(run_id, None)
            if rt is None:  # a queued run cancelled (or expired) meanwhile is gone from _queued
                continue
            if now - rt.row.created_at > self._queue_ttl(rt.row.priority):
                self._expire(rt, now)
                continue
            admitted = self._admit(rt)
            if admitted is None:  # its resources are not free: the head waits (DESIGN §3.8)
                self._queued[run_id] = rt
                heapq.heappush(self._queue, (rank, seq, run_id))
                return
            self._start_run(rt)
            if admitted.dropped:  # `degrade`: what needed the skipped steps is decided now
                self._advance(rt, rt.compiled.plan.order)

    def _queue_ttl(self, priority: str) -> float:
        return self._ttl_s[priority]

    def _expire(self, rt: RunRuntime, now: float) -> None:
        """Ends a run that waited in the queue past its priority's TTL (DESIGN §3.7)."""
        self._queued.pop(rt.run_id, None)
        self._active[rt.run_id] = rt  # until _retire, like any run that finishes
        waited, ttl = now - rt.row.created_at, self._queue_ttl(rt.row.priority)
        rt.row.status = "expired"
        rt.row.error = (
            f"waited {waited:.1f}s queued, past the {rt.row.priority} priority's"
            f" queue TTL of {ttl:g}s"
        )
        self._emit(
            rt,
            "run.expired",
            {"priority": rt.row.priority, "waited_s": round(waited, 3), "ttl_s": ttl},
        )
        self._finalize(rt)

    def _expire_queued(self) -> None:
        """Expires overdue runs still waiting in this engine's queue (nothing pumps them)."""
        now = self.clock.now()
        oldest_allowed = {p: now - ttl for p, ttl in self._ttl_s.items()}
        overdue = [
            rt for rt in self._queued.values()
            if rt.row.created_at < oldest_allowed[rt.row.priority]
        ]
        for rt in overdue:
            self._expire(rt, now)

    async def expire_overdue(self, limit: int = 500) -> list[str]:
        """Expires queued runs in the store that nobody holds and that waited past their
        TTL (distributed mode: their dispatch may sit behind a backlog); returns them."""
        overdue = await self.store.overdue_queued(self._ttl_s, limit)
        expired = []
        for run_id in await self.store.claim_unfinished(
            self.owner, self.settings.lease_s, overdue
        ):
            row = await self.store.get_run(run_id)
            if row is None or row.status != "queued" or self.knows(run_id):
                continue
            compiled = await self._compiled_for(row.definition_digest)
            self._expire(self._runtime(row, compiled, []), self.clock.now())
            expired.append(run_id)
        await self.journal.committed()
        return expired

    def _admit(self, rt: RunRuntime) -> Admitted | None:
        """Takes the run's peak resources from this engine's shares (None: not free yet);
        `degrade` may drop its optional steps to fit, skipped here with the reason."""
        admission = self.control.admission
        if not admission.enabled:
            return _ADMITTED
        admitted = admission.admit(rt.run_id, rt.workflow, rt.compiled.plan)
        if admitted is None:
            return None
        for step_id in admitted.dropped:
            st = rt.steps[step_id]
            if st.status == "pending":
                self._skip(rt, st, admitted.reason)
        return admitted

    def _start_run(self, rt: RunRuntime) -> None:
        self._active[rt.run_id] = rt
        rt.row.status, rt.row.started_at = "running", self.clock.now()
        self.journal.run(rt.row)
        self._emit(rt, "run.started", {})
        self._arm_timeout(rt)
        # A replayed run has finished steps already: look at every step, not just the roots.
        self._advance(rt, rt.compiled.plan.order if rt.completed else rt.compiled.roots)

    def _arm_timeout(self, rt: RunRuntime) -> None:
        limit = rt.workflow.timeout_s
        if limit is None or rt.row.started_at is None:
            return
        remaining = max(0.0, rt.row.started_at + limit - self.clock.now())
        rt.timer = asyncio.get_running_loop().call_later(
            remaining, self._stop, rt, "timed_out", f"the run timed out after {limit:g}s"
        )

    # -- deciding what runs --------------------------------------------------------------------

    def _advance(self, rt: RunRuntime, candidates: Iterable[str]) -> None:
        """Starts or skips every candidate whose trigger rule is decided, then its dependents."""
        work = deque(candidates)
        dependents = rt.compiled.plan.dependents
        while work:
            st = rt.steps[work.popleft()]
            if st.status != "pending":
                continue
            step = rt.compiled.step(st.step_id)
            gate = self._gate(rt, step)
            if gate is Gate.WAIT:
                continue
            if gate is Gate.SKIP:
                self._skip(rt, st, "its trigger rule can no longer hold")
            else:
                self._start_step(rt, st, step)
            if st.done:
                work.extend(dependents[st.step_id])
        self._maybe_finish(rt)

    def _gate(self, rt: RunRuntime, step: Step) -> Gate:
        stopping = rt.row.stopping
        if stopping is not None and (stopping != "failed" or step.trigger not in CLEANUP_TRIGGERS):
            return Gate.SKIP
        steps = rt.steps
        return trigger_gate(step.trigger, [steps[n].status for n in step.needs])

    def _start_step(self, rt: RunRuntime, st: StepState, step: Step) -> None:
        try:
            if step.when is not None and not _truthy(render(step.when, rt.context(st, 1, {}))):
                self._skip(rt, st, "its `when` condition is false")
                return
            if step.for_each is None:
                self._launch(rt, st)
                return
            items = _items(step, rt.context(st, 1, {}))
        except ExpressionError as exc:
            self._fail_now(rt, st, str(exc), type(exc).__name__)
            return
        rt.items[st.step_id] = items
        st.status, st.started_at, st.attempts = "running", self.clock.now(), 1
        self.journal.step(st)
        self._emit(rt, "agent.task.started", {"step": st.step_id, "instances": len(items)})
        rt.instances[st.step_id] = [StepState(rt.run_id, st.step_id, i) for i in range(len(items))]
        self._fill_instances(rt, st, step)

    def _fill_instances(self, rt: RunRuntime, parent: StepState, step: Step) -> None:
        instances = rt.instances[parent.step_id]
        limit = step.max_parallel or len(instances) or 1
        running = sum(1 for i in instances if i.status == "running")
        for inst in instances:
            if running >= limit:
                break
            if inst.status == "pending":
                self._launch(rt, inst)
                running += 1
        if all(i.done for i in instances):
            self._for_each_done(rt, parent, step)

    def _launch(self, rt: RunRuntime, st: StepState) -> None:
        if self._is_paused(rt, st):
            self._hold(rt, st)
            return
        st.status, st.attempts = "running", st.attempts + 1
        st.started_at = st.started_at or self.clock.now()
        self.journal.step(st)
        self._emit(
            rt,
            "agent.task.started",
            {
                "step": st.step_id,
                "index": st.index,
                "attempt": st.attempts,
            },
        )
        self.journal.after(lambda: self._spawn(rt, st))

    def _spawn(self, rt: RunRuntime, st: StepState) -> None:
        if st.status == "running" and not rt.row.done and rt.run_id in self._active:
            name = f"step:{rt.run_id}/{st.step_id}" + (f"[{st.index}]" if st.index >= 0 else "")
            rt.tasks[(st.step_id, st.index)] = self.tasks.start(self._execute(rt, st), name=name)

    async def _execute(self, rt: RunRuntime, st: StepState) -> None:
        step = rt.compiled.step(st.step_id)
        try:
            outcome = await self._executor.run_step(rt, st, step)
        finally:
            rt.tasks.pop((st.step_id, st.index), None)
        self._finish(rt, st, outcome)

    # -- results -------------------------------------------------------------------------------

    def _finish(self, rt: RunRuntime, st: StepState, outcome: Outcome) -> None:
        if st.status != "running" or rt.row.done or rt.lost:
            return  # cancelled, timed out or taken over meanwhile: a late result is ignored
        st.finished_at = self.clock.now()
        payload: dict[str, Any] = {
            "step": st.step_id,
            "index": st.index,
            "attempt": st.attempts,
            "duration_s": round(st.finished_at - (st.started_at or st.finished_at), 6),
        }
        if outcome.ok and outcome.result is not None:
            result = outcome.result
            st.status, st.error, st.fallback_used = "succeeded", None, outcome.fallback_used
            st.error_type = st.traceback = None
            st.output, st.output_blob = result.output, outcome.blob
            st.cost_usd, st.tokens_in, st.tokens_out = (
                result.cost_usd,
                result.tokens_in,
                result.tokens_out,
            )
            st.completed_seq = rt.next_seq()
            if result.cost_usd or result.tokens_in or result.tokens_out:
                self._record_spend(rt, st, result)
            payload.update(fallback_used=outcome.fallback_used, cost_usd=result.cost_usd)
            self._emit(rt, "agent.task.completed", payload)
        else:
            st.status, st.error = "failed", outcome.error
            st.error_type, st.traceback = outcome.error_type, outcome.traceback
            detail = {"error": outcome.error, "error_type": st.error_type}
            self._emit(rt, "agent.task.failed", {**payload, **detail, "traceback": st.traceback})
            log.warning(
                "step failed", run_id=rt.run_id, step=st.step_id, index=st.index,
                attempt=st.attempts, **self.redactor.value(detail),
                traceback=st.traceback and self.redactor.text(st.traceback),
            )
        signal_id = rt.signal_ids.pop((st.step_id, st.index), None)
        if signal_id is not None:
            self.journal.signal_taken(signal_id)
        self.journal.step(st)
        if st.index >= 0:
            self._instance_done(rt, st)
        else:
            self._step_done(rt, st)

    def _record_spend(self, rt: RunRuntime, st: StepState, result: StepResult) -> None:
        """The spend ledger's row, committed with the result (a for_each step's cost is its
        instances' rows)."""
        if st.index < 0 and rt.compiled.step(st.step_id).for_each is not None:
            return
        self.journal.spend(SpendRow(
            st.run_id, st.step_id, st.index, st.finished_at or self.clock.now(), rt.row.workflow,
            result.model, result.tokens_in, result.tokens_out, result.cost_usd,
        ))

    def _run_budget(self, run_id: str) -> RunBudget | None:
        """A run's budget and spend so far, for the budget guard (None: no budget, or the run
        is not running here)."""
        rt = self._active.get(run_id)
        budget = rt.workflow.budget if rt is not None else None
        if rt is None or budget is None or budget.usd is None:
            return None
        return RunBudget(budget, sum(s.cost_usd for s in rt.compensation_units()))

    def _fail_now(
        self, rt: RunRuntime, st: StepState, error: str, error_type: str | None = None
    ) -> None:
        """Fails a step before any attempt (a bad `when` or `for_each`)."""
        st.status, st.error = "running", None
        st.started_at = st.started_at or self.clock.now()
        self._finish(rt, st, Outcome(error=error, error_type=error_type))

    def _instance_done(self, rt: RunRuntime, inst: StepState) -> None:
        parent = rt.steps[inst.step_id]
        if parent.status != "running":
            return
        step = rt.compiled.step(inst.step_id)
        if inst.status == "failed":
            for other in rt.instances[inst.step_id]:
                if other.status == "running":
                    self._cancel_step(rt, other, f"instance {inst.index} failed")
            error = f"instance {inst.index} failed: {inst.error}"
            outcome = Outcome(error=error, error_type=inst.error_type, traceback=inst.traceback)
            self._finish(rt, parent, outcome)
            return
        self._fill_instances(rt, parent, step)

    def _for_each_done(self, rt: RunRuntime, parent: StepState, step: Step) -> None:
        instances = rt.instances[parent.step_id]
        output = [i.output for i in instances]
        try:
            blob = self._executor.encode(parent.step_id, output)
        except StepError as exc:
            self._finish(rt, parent, Outcome(error=str(exc), error_type=type(exc).__name__))
            return
        result = StepResult(
            output=output,
            cost_usd=sum(i.cost_usd for i in instances),
            tokens_in=sum(i.tokens_in for i in instances),
            tokens_out=sum(i.tokens_out for i in instances),
        )
        fallback = any(i.fallback_used for i in instances)
        self._finish(rt, parent, Outcome(result, blob, fallback_used=fallback))

    def _step_done(self, rt: RunRuntime, st: StepState) -> None:
        step = rt.compiled.step(st.step_id)
        if st.status == "failed" and not step.optional:
            self._stop(rt, "failed", f"step {st.step_id} failed: {st.error}")
        self._advance(rt, rt.compiled.plan.dependents[st.step_id])

    def _skip(self, rt: RunRuntime, st: StepState, reason: str) -> None:
        st.status, st.finished_at = "skipped", self.clock.now()
        self.journal.step(st)
        self._emit(rt, "agent.task.skipped", {"step": st.step_id, "reason": reason})

    def _cancel_step(self, rt: RunRuntime, st: StepState, reason: str) -> None:
        st.status, st.finished_at, st.error = "cancelled", self.clock.now(), reason
        self.journal.step(st)
        self._emit(
            rt, "agent.task.cancelled", {"step": st.step_id, "index": st.index, "reason": reason}
        )
        task = rt.tasks.pop((st.step_id, st.index), None)
        if task is not None:
            task.cancel()

    # -- stopping, compensation, completion -----------------------------------------------------

    def _stop(
        self, rt: RunRuntime, outcome: str, reason: str, actor: Actor = SYSTEM_ACTOR
    ) -> None:
        """Fails, cancels or times out a run: running steps are cancelled, then compensation."""
        if rt.row.stopping is not None or rt.row.done:
            return
        rt.row.stopping, rt.row.error = outcome, reason
        self.journal.run(rt.row)
        self._emit(rt, "run.stopping", {"outcome": outcome, "reason": reason}, actor=actor)
        for st in list(rt.all_states()):
            if st.status in ("running", "ready"):  # ready: held back by a pause
                self._cancel_step(rt, st, reason)
        self._advance(rt, rt.compiled.plan.order)

    def _maybe_finish(self, rt: RunRuntime) -> None:
        if rt.row.done or rt.compensating or rt.lost or rt.run_id not in self._active:
            return
        if any(st.status in _OPEN for st in rt.steps.values()):
            return
        if rt.row.stopping is not None:
            pending = self._to_compensate(rt)
            if pending:
                rt.compensating = True
                self.tasks.start(self._compensate(rt, pending), name=f"compensate:{rt.run_id}")
                return
        self._complete(rt)

    def _to_compensate(self, rt: RunRuntime) -> list[StepState]:
        states = [
            st
            for st in rt.compensation_units()
            if st.status == "succeeded"
            and st.compensation_error is None
            and rt.compiled.step(st.step_id).compensate is not None
        ]
        return sorted(states, key=lambda s: s.completed_seq or 0, reverse=True)

    async def _compensate(self, rt: RunRuntime, states: list[StepState]) -> None:
        """Saga: undo succeeded steps in reverse completion order; one failure stops nothing."""
        for st in states:
            if rt.lost:
                return
            step = rt.compiled.step(st.step_id)
            outcome = await self._executor.run_compensation(rt, st, step)
            if outcome.ok:
                st.status = "compensated"
                self._emit(rt, "agent.task.compensated", {"step": st.step_id, "index": st.index})
            else:
                st.compensation_error = outcome.error
                self._emit(
                    rt,
                    "agent.task.compensation_failed",
                    {
                        "step": st.step_id,
                        "index": st.index,
                        "error": outcome.error,
                    },
                )
            self.journal.step(st)
            await self.journal.committed()
        for step_id, instances in rt.instances.items():
            parent = rt.steps[step_id]
            if (
                parent.status == "succeeded"
                and instances
                and all(i.status == "compensated" for i in instances)
            ):
                parent.status = "compensated"
                self.journal.step(parent)
        self._complete(rt)

    def _complete(self, rt: RunRuntime) -> None:
        row = rt.row
        units = list(rt.compensation_units())
        parents = rt.steps.values()
        failed = sum(1 for s in units if s.compensation_error is not None)
        ran = failed + sum(1 for s in units if s.status == "compensated")
        degraded = any(s.status == "failed" or s.fallback_used for s in parents)
        row.status = final_status(
            row.stopping, degraded=degraded, compensations_ran=ran, compensations_failed=failed
        )
        row.finished_at = self.clock.now()
        row.cost_usd = sum(s.cost_usd for s in parents)
        row.tokens_in = sum(s.tokens_in for s in parents)
        row.tokens_out = sum(s.tokens_out for s in parents)
        if rt.timer is not None:
            rt.timer.cancel()
        self._finalize(rt)

    def _finalize(self, rt: RunRuntime) -> None:
        row = rt.row
        row.finished_at = row.finished_at or self.clock.now()
        self.journal.run(row)
        self._emit(
            rt,
            "run.completed",
            {
                "status": row.status,
                "error": row.error,
                "duration_s": round(row.finished_at - (row.started_at or row.created_at), 6),
            },
        )
        if row.status in RUN_DEAD:
            failed_steps = tuple(
                s.step_id for s in rt.steps.values() if s.status in ("failed", "cancelled")
            )
            self.journal.dead_letter(
                DlqEntry(
                    row.run_id,
                    row.workflow,
                    row.status,
                    row.error,
                    failed_steps,
                    row.finished_at,
                )
            )
        self.journal.after(lambda: self._retire(rt))

    def _retire(self, rt: RunRuntime) -> None:
        self._active.pop(rt.run_id, None)
        self.control.admission.release(rt.run_id)
        if rt.done is not None and not rt.done.done():
            rt.done.set_result(None)
        self._pump()

    # -- recovery ---------------------------------------------------------------------------

    async def _resume(self, run_id: str) -> None:
        row = await self.store.get_run(run_id)
        if row is None or row.done:
            return
        compiled = await self._compiled_for(row.definition_digest)
        rt = self._runtime(row, compiled, await self.store.get_steps(run_id))
        if row.status == "queued":
            self._enqueue(rt)
            return
        self._active[run_id] = rt
        if self.control.admission.enabled:  # admitted before: takes its resources back
            self.control.admission.hold(run_id, rt.workflow, compiled.plan)
        self._emit(rt, "run.resumed", {"owner": self.owner})
        self._arm_timeout(rt)
        interrupted = [s for s in rt.all_states() if s.status in ("running", "ready")]
        if row.stopping is not None:
            for st in interrupted:
                self._cancel_step(rt, st, row.error or "the run was stopping")
        else:
            self._relaunch(rt, interrupted)
        self._advance(rt, compiled.plan.order)

    def _relaunch(self, rt: RunRuntime, interrupted: list[StepState]) -> None:
        for st in interrupted:
            if st.index >= 0:
                continue
            step = rt.compiled.step(st.step_id)
            if step.for_each is None:
                self._launch(rt, st)
                continue
            try:
                rt.items[st.step_id] = _items(step, rt.context(st, 1, {}))
            except ExpressionError as exc:
                self._finish(rt, st, Outcome(error=str(exc), error_type=type(exc).__name__))
                continue
            kept = {i.index: i for i in rt.instances.get(st.step_id, [])}
            rt.instances[st.step_id] = [
                kept.get(i) or StepState(rt.run_id, st.step_id, i)
                for i in range(len(rt.items[st.step_id]))
            ]
            for inst in rt.instances[st.step_id]:
                if inst.status == "running":
                    inst.status = "pending"
            self._fill_instances(rt, st, step)

    def _runtime(self, row: RunState, compiled: Compiled, states: list[StepState]) -> RunRuntime:
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
        rt.done = asyncio.get_running_loop().create_future()
        return rt

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
        rt = self._active.get(run_id) or self._queued.get(run_id)
        row = rt.row if rt is not None else await self.store.get_run(run_id)
        if row is None:
            raise RunNotFound(run_id)
        if row.done:
            raise RunFinished(run_id, row.status, action)
        return row

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

    def _is_paused(self, rt: RunRuntime, st: StepState) -> bool:
        if not self._paused:
            return False
        agent = rt.compiled.step(st.step_id).agent
        return ("workflow", rt.row.workflow) in self._paused or (
            agent is not None and ("agent", agent) in self._paused
        )

    def _hold(self, rt: RunRuntime, st: StepState) -> None:
        if st.status != "ready":
            st.status = "ready"
            self.journal.step(st)
            self._emit(rt, "agent.task.held", {"step": st.step_id, "index": st.index})
        self._held.append((rt, st))

    def _set_pauses(self, paused: set[tuple[str, str]]) -> None:
        self._paused = paused
        held, self._held = self._held, []
        for rt, st in held:
            if st.status != "ready" or not self.knows(rt.run_id) or rt.lost:
                continue
            if st.index < 0:
                self._launch(rt, st)  # holds it again if still paused
                continue
            st.status = "pending"  # for_each: refill within max_parallel
            parent = rt.steps[st.step_id]
            self._fill_instances(rt, parent, rt.compiled.step(st.step_id))

    # -- for EngineHost -------------------------------------------------------------------------

    def runtime(self, run_id: str) -> RunRuntime:
        return self._active[run_id]

    def knows(self, run_id: str) -> bool:
        """True if this engine runs or queues the run."""
        return run_id in self._active or run_id in self._queued

    async def definition(self, digest: str) -> Workflow:
        return (await self._compiled_for(digest)).workflow

    def emit_for(self, run_id: str, event_type: str, payload: dict[str, Any]) -> None:
        self._emit(self._active[run_id], event_type, payload)

    # -- events ------------------------------------------------------------------------------

    def _emit_control(self, run_id: str, event_type: str, payload: dict[str, Any]) -> None:
        """A control-layer event: in the run's chain when this engine runs it, else alone."""
        rt = self._active.get(run_id)
        if rt is not None:
            self._emit(rt, event_type, payload)
            return
        self.journal.event(Event(event_type=event_type, correlation_id=run_id, payload=payload))

    def _emit(
        self,
        rt: RunRuntime,
        event_type: str,
        payload: dict[str, Any],
        actor: Actor = SYSTEM_ACTOR,
    ) -> None:
        event = Event(
            event_type=event_type,
            correlation_id=rt.run_id,
            payload=payload,
            causation_id=rt.last_event_id,
            priority=rt.row.priority,
            actor=actor.label,
        )
        rt.last_event_id = event.event_id
        self.journal.event(event)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "0", "no", "none", "null")
    return bool(value)


def _items(step: Step, context: Mapping[str, Any]) -> list[Any]:
    items = render(step.for_each, context) if isinstance(step.for_each, str) else step.for_each
    if not isinstance(items, list):
        raise ExpressionError(
            f"for_each of step {step.id} did not give a list (got {type(items).__name__})"
        )
    return items
