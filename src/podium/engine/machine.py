"""The run state machine: what happened to one run goes in, what to do about it comes out.

Pure: no I/O, no asyncio, the time passed in. The engine (engine.py) carries out the Effects.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from podium.engine.rules import CLEANUP_TRIGGERS, Gate, final_status, trigger_gate
from podium.engine.runtime import RunRuntime
from podium.engine.transitions import Transition, move_run, move_step
from podium.errors import ExpressionError, StepError
from podium.events import SYSTEM_ACTOR, Actor
from podium.model.expressions import render
from podium.model.status import RUN_DEAD, STEP_OPEN, RunStatus, StepStatus
from podium.model.workflow import Action, LlmAction, Step
from podium.steps import StepResult
from podium.store.records import DlqEntry, StepState
from podium.store.spend import SpendRow

R, S = RunStatus, StepStatus
# Plain-string twins of the statuses for the hot comparisons: an enum member's attribute
# lookup costs ten times a module constant's, and a run decides dozens of times per step.
_PENDING, _READY, _RUNNING = S.PENDING.value, S.READY.value, S.RUNNING.value
_SUCCEEDED, _FAILED, _CANCELLED = S.SUCCEEDED.value, S.FAILED.value, S.CANCELLED.value
_COMPENSATED, _SKIPPED = S.COMPENSATED.value, S.SKIPPED.value
_LIVE = frozenset({_RUNNING, _READY})
_FAILURES = frozenset({_FAILED, _CANCELLED})
_RUN_RUNNING, _RUN_FAILED = R.RUNNING.value, R.FAILED.value
StepKey = tuple[str, int]  # (step id, instance index; -1 for the step itself)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a step's attempts (retries and fallback included) ended."""

    result: StepResult | None = None
    blob: bytes | None = None
    error: str | None = None
    fallback_used: bool = False
    error_type: str | None = None  # a failure's exception type, and its (masked) traceback
    traceback: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


# An event to emit about the run: (type, payload, actor); the engine gives it an id and its
# causation. A plain tuple: a run makes two or three a step.
Notice = tuple[str, dict[str, Any], Actor]


@dataclass(slots=True)
class Effects:
    """What the engine must do after one input: journal, emit, then (once committed) act."""

    run: bool = False  # the run's row changed
    steps: dict[tuple[str, int], StepState] = field(default_factory=dict)
    notices: list[Notice] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    spend: list[SpendRow] = field(default_factory=list)
    signals_taken: list[int] = field(default_factory=list)
    dead_letter: DlqEntry | None = None
    start: list[StepState] = field(default_factory=list)  # after the commit
    cancel: list[StepKey] = field(default_factory=list)  # at once
    held: list[StepState] = field(default_factory=list)  # a pause keeps them: retry on release
    arm_at: float | None = None  # the run's deadline (wall time), to arm a timer for
    disarm: bool = False
    compensate: list[StepState] = field(default_factory=list)  # in this order, after the commit
    finished: bool = False  # the run is final: retire it once committed


class RunMachine:
    """The decisions for one run. Each public method is one input and returns its Effects."""

    def __init__(
        self,
        run: RunRuntime,
        *,
        paused: Callable[[str, str | None], bool],
        encode: Callable[[str, Any], bytes],
    ) -> None:
        self.run = run
        self._paused = paused  # (workflow, agent) -> held by an operator's pause?
        self._encode = encode  # a step's output -> its stored bytes (raises StepError)
        self._fx = Effects()
        self._now = 0.0
        # Attempts in flight that wait for a concurrency slot: `ready` meanwhile, not running.
        self._slot_waits: set[StepKey] = set()

    # -- inputs -----------------------------------------------------------------------------

    def queued(self, now: float, actor: Actor) -> Effects:
        """Submitted: the run waits for admission."""
        self._begin(now)
        row = self.run.row
        self._fx.run = True
        self._emit("run.queued", {"workflow": row.workflow, "priority": row.priority}, actor)
        return self._fx

    def replayed(self, now: float, actor: Actor) -> Effects:
        """Out of the dead-letter queue: queued anew, its succeeded steps kept (the runtime
        holds only those; every other step is pending again)."""
        self._begin(now)
        rt, row = self.run, self.run.row
        self._move_run(R.QUEUED)
        row.stopping = row.error = row.finished_at = None
        row.created_at = now  # its queue TTL counts from now
        for st in rt.all_states():
            self._journal(st)  # rewrites the reset rows as pending
        kept = sorted({s.step_id for s in rt.all_states() if s.status == _SUCCEEDED})
        self._emit("run.replayed", {"kept_steps": kept}, actor)
        return self._fx

    def start(self, now: float, dropped: Iterable[str] = (), reason: str = "") -> Effects:
        """Admitted: the run starts; `degrade` admission skipped the `dropped` steps."""
        self._begin(now)
        rt = self.run
        for step_id in dropped:
            st = rt.steps[step_id]
            if st.status == _PENDING:
                self._skip(st, reason)
                # Kept with the step (a skip has no error otherwise): the run ends `degraded`,
                # whichever engine completes it.
                st.error = reason or "dropped to fit the free resources"
        self._move_run(R.RUNNING)
        rt.row.started_at = now
        self._emit("run.started", self._trace_facts())
        self._arm()
        # A replayed run (or one degraded) has decided steps already: look at every step.
        order = rt.compiled.plan.order
        self._advance(order if rt.completed or dropped else rt.compiled.roots)
        return self._fx

    def expire(self, now: float, ttl_s: float) -> Effects:
        """It waited in the queue past its priority's TTL."""
        self._begin(now)
        row = self.run.row
        waited = now - row.created_at
        self._move_run(R.EXPIRED)
        row.error = (
            f"waited {waited:.1f}s queued, past the {row.priority} priority's"
            f" queue TTL of {ttl_s:g}s"
        )
        payload = {"priority": row.priority, "waited_s": round(waited, 3), "ttl_s": ttl_s}
        self._emit("run.expired", payload)
        self._finalize()
        return self._fx

    def end(self, now: float, status: RunStatus, reason: str) -> Effects:
        """Ends the run at once: cancelled in the queue, or unrunnable (failed)."""
        self._begin(now)
        self._move_run(status)
        self.run.row.error = reason
        self._finalize()
        return self._fx

    def stop(
        self, now: float, outcome: RunStatus, reason: str, actor: Actor = SYSTEM_ACTOR
    ) -> Effects:
        """Fails, cancels or times out the run: running steps are cancelled, then compensation."""
        self._begin(now)
        self._stop(outcome, reason, actor)
        return self._fx

    def resume(self, now: float, owner: str) -> Effects:
        """This engine took the running run over (after a crash or a lost lease)."""
        self._begin(now)
        rt = self.run
        self._emit("run.resumed", {"owner": owner, **self._trace_facts()})
        self._arm()
        interrupted = [s for s in rt.all_states() if s.status in _LIVE]
        if rt.row.stopping is not None:
            for st in interrupted:
                self._cancel_step(st, rt.row.error or "the run was stopping")
        else:
            self._relaunch(interrupted)
        self._advance(rt.compiled.plan.order)
        return self._fx

    def finished(self, now: float, st: StepState, outcome: Outcome) -> Effects:
        """A step's attempts ended (a late result, after a cancel or a stop, is ignored)."""
        self._begin(now)
        if self._slot_waits and (st.step_id, st.index) in self._slot_waits:
            self._slot_waits.discard((st.step_id, st.index))
            if st.status == _READY:  # refused while it waited (a budget, a circuit)
                self._move_step(st, S.RUNNING)
        if st.status == _RUNNING and not self.run.row.done:
            self._finish(st, outcome)
        return self._fx

    def retrying(
        self, now: float, st: StepState, attempt: int, error: StepError, delay_s: float
    ) -> Effects:
        self._begin(now)
        self._emit("agent.task.retrying", {
            "step": st.step_id, "index": st.index, "attempt": attempt, "error": str(error),
            "error_type": error.error_type or type(error).__name__, "delay_s": round(delay_s, 3),
        })
        return self._fx

    def next_attempt(self, now: float, st: StepState, attempt: int) -> Effects:
        """The next attempt starts (its count is committed first: it survives a crash)."""
        self._begin(now)
        st.attempts = attempt
        self._journal(st)
        self._started(st)
        return self._fx

    def waiting_for_slot(self, now: float, st: StepState, attempt: int) -> Effects:
        """The attempt waits for a concurrency slot or rate-limit token: `ready`, not running."""
        self._begin(now)
        if st.status == _RUNNING and not self.run.row.done:
            self._slot_waits.add((st.step_id, st.index))
            self._move_step(st, S.READY)
            self._emit("agent.task.waiting", {
                "step": st.step_id, "index": st.index, "attempt": attempt, "for": "slot",
            })
        return self._fx

    def got_slot(self, now: float, st: StepState, attempt: int) -> Effects:
        """The waiting attempt got its slot and starts now (the first one sets `started_at`)."""
        self._begin(now)
        key = (st.step_id, st.index)
        if key in self._slot_waits and st.status == _READY and not self.run.row.done:
            self._slot_waits.discard(key)
            self._move_step(st, S.RUNNING)
            if attempt <= 1:
                st.started_at = now
            self._emit("agent.task.started", {
                "step": st.step_id, "index": st.index, "attempt": attempt, "after_waiting": True,
            })
        return self._fx

    def falling_back(self, now: float, st: StepState, error: StepError) -> Effects:
        self._begin(now)
        payload = {
            "step": st.step_id, "index": st.index, "attempt": st.attempts, "error": str(error),
            "error_type": error.error_type or type(error).__name__,
        }
        fallback = self.run.compiled.step(st.step_id).fallback
        if fallback is not None:  # what runs instead, for whoever names its span
            payload.update(_action_facts(fallback))
        self._emit("agent.task.fallback", payload)
        return self._fx

    def compensated(self, now: float, st: StepState, outcome: Outcome) -> Effects:
        """One saga compensation ended (they run one by one, newest completion first)."""
        self._begin(now)
        if outcome.ok:
            self._move_step(st, S.COMPENSATED)
            self._emit("agent.task.compensated", {"step": st.step_id, "index": st.index})
        else:
            st.compensation_error = outcome.error
            self._emit("agent.task.compensation_failed", {
                "step": st.step_id, "index": st.index, "error": outcome.error,
            })
            self._journal(st)
        return self._fx

    def compensation_done(self, now: float) -> Effects:
        self._begin(now)
        rt = self.run
        for step_id, instances in rt.instances.items():
            parent = rt.steps[step_id]
            if parent.status == _SUCCEEDED and instances and all(
                i.status == _COMPENSATED for i in instances
            ):
                self._move_step(parent, S.COMPENSATED)
        self._complete()
        return self._fx

    def release(self, now: float, st: StepState) -> Effects:
        """The pauses changed: a held step starts, or is held again if still paused."""
        self._begin(now)
        if st.status != _READY or self.run.row.done or (st.step_id, st.index) in self._slot_waits:
            return self._fx
        if st.index < 0:
            self._launch(st)
        elif self.run.steps[st.step_id].status == _RUNNING:  # refilled within max_parallel
            self._move_step(st, S.PENDING)
            self._fill_instances(self.run.steps[st.step_id])
        return self._fx

    def note(self, event_type: str, payload: dict[str, Any]) -> Effects:
        """Something worth an event that changes no status (a wait, a throttle, a circuit)."""
        self._begin(self._now)
        self._emit(event_type, payload)
        return self._fx

    # -- deciding what runs -------------------------------------------------------------------

    def _advance(self, candidates: Iterable[str]) -> None:
        """Starts or skips every candidate whose trigger rule is decided, then its dependents."""
        rt = self.run
        work = deque(candidates)
        dependents = rt.compiled.plan.dependents
        while work:
            st = rt.steps[work.popleft()]
            if st.status != _PENDING:
                continue
            step = rt.compiled.step(st.step_id)
            gate = self._gate(step)
            if gate is Gate.WAIT:
                continue
            if gate is Gate.SKIP:
                self._skip(st, "its trigger rule can no longer hold")
            else:
                self._start_step(st, step)
            if st.done:
                work.extend(dependents[st.step_id])
        self._maybe_finish()

    def _gate(self, step: Step) -> Gate:
        stopping = self.run.row.stopping
        cleanup = stopping == _RUN_FAILED and step.trigger in CLEANUP_TRIGGERS
        if stopping is not None and not cleanup:
            return Gate.SKIP
        steps = self.run.steps
        return trigger_gate(step.trigger, [steps[n].status for n in step.needs])

    def _start_step(self, st: StepState, step: Step) -> None:
        rt = self.run
        try:
            if step.when is not None and not _truthy(render(step.when, rt.context(st, 1, {}))):
                self._skip(st, "its `when` condition is false")
                return
            if step.for_each is None:
                self._launch(st)
                return
            items = _items(step, rt.context(st, 1, {}))
        except ExpressionError as exc:
            st.started_at = st.started_at or self._now
            self._record(st, Outcome(error=str(exc), error_type=type(exc).__name__))
            self._step_done(st)
            return
        rt.items[st.step_id] = items
        self._move_step(st, S.RUNNING)
        st.started_at, st.attempts = self._now, 1
        self._emit("agent.task.started", {"step": st.step_id, "instances": len(items)})
        rt.instances[st.step_id] = [StepState(rt.run_id, st.step_id, i) for i in range(len(items))]
        self._fill_instances(st)

    def _fill_instances(self, parent: StepState) -> None:
        step = self.run.compiled.step(parent.step_id)
        instances = self.run.instances[parent.step_id]
        limit = step.max_parallel or len(instances) or 1
        running = sum(1 for i in instances if i.status == _RUNNING)
        if self._slot_waits:  # ready while they wait for a slot: in flight all the same
            running += sum(1 for i in instances if (i.step_id, i.index) in self._slot_waits)
        for inst in instances:
            if running >= limit:
                break
            if inst.status == _PENDING:
                self._launch(inst)
                running += 1
        if all(i.done for i in instances):
            self._for_each_done(parent)

    def _launch(self, st: StepState) -> None:
        rt = self.run
        if self._paused(rt.row.workflow, rt.compiled.step(st.step_id).agent):
            if st.status != _READY:
                self._move_step(st, S.READY)
                self._emit("agent.task.held", {"step": st.step_id, "index": st.index})
            self._fx.held.append(st)
            return
        self._move_step(st, S.RUNNING)
        st.attempts += 1
        st.started_at = st.started_at or self._now
        self._started(st)
        self._fx.start.append(st)

    def _started(self, st: StepState) -> None:
        action = self.run.compiled.step(st.step_id).action
        payload = {
            "step": st.step_id, "index": st.index, "attempt": st.attempts, "kind": action.kind
        }
        if action.kind == "llm":
            payload.update(_action_facts(action))
        self._emit("agent.task.started", payload)

    def _relaunch(self, interrupted: list[StepState]) -> None:
        rt = self.run
        for st in interrupted:
            if st.index >= 0:
                continue  # instances are refilled through their step
            step = rt.compiled.step(st.step_id)
            if step.for_each is None:
                self._launch(st)
                continue
            try:
                rt.items[st.step_id] = _items(step, rt.context(st, 1, {}))
            except ExpressionError as exc:
                self._finish(st, Outcome(error=str(exc), error_type=type(exc).__name__))
                continue
            kept = {i.index: i for i in rt.instances.get(st.step_id, [])}
            rt.instances[st.step_id] = [
                kept.get(i) or StepState(rt.run_id, st.step_id, i)
                for i in range(len(rt.items[st.step_id]))
            ]
            for inst in rt.instances[st.step_id]:
                if inst.status in _LIVE:
                    self._move_step(inst, S.PENDING)
            self._fill_instances(st)

    # -- results ------------------------------------------------------------------------------

    def _finish(self, st: StepState, outcome: Outcome) -> None:
        self._record(st, outcome)
        if st.index < 0:
            self._step_done(st)
            return
        parent = self.run.steps[st.step_id]
        if parent.status != _RUNNING:
            return
        if st.status == _FAILED:
            for other in self.run.instances[st.step_id]:
                if other.status in _LIVE:  # ready: held back by a pause
                    self._cancel_step(other, f"instance {st.index} failed")
            error = f"instance {st.index} failed: {st.error}"
            failure = Outcome(error=error, error_type=st.error_type, traceback=st.traceback)
            self._record(parent, failure)
            self._step_done(parent)
            return
        self._fill_instances(parent)

    def _record(self, st: StepState, outcome: Outcome) -> None:
        """The result of a step (or instance): its status, detail, spend and event."""
        rt = self.run
        st.finished_at = self._now
        payload: dict[str, Any] = {
            "step": st.step_id,
            "index": st.index,
            "attempt": st.attempts,
            "duration_s": round(st.finished_at - (st.started_at or st.finished_at), 6),
        }
        if outcome.ok and outcome.result is not None:
            result = outcome.result
            self._move_step(st, S.SUCCEEDED)
            st.error = st.error_type = st.traceback = None
            st.fallback_used = outcome.fallback_used
            st.output, st.output_blob = result.output, outcome.blob
            st.cost_usd, st.tokens_in, st.tokens_out = (
                result.cost_usd, result.tokens_in, result.tokens_out
            )
            st.completed_seq = rt.next_seq()
            if not result.ledgered and (result.cost_usd or result.tokens_in or result.tokens_out):
                self._spend(st, result)
            elif result.ledgered:
                rt.booked.resulted(result.cost_usd, result.tokens_in, result.tokens_out)
            payload.update(fallback_used=outcome.fallback_used, cost_usd=result.cost_usd)
            if result.model is not None:  # a model call: what it used and answered with
                payload.update(
                    model=result.model, response_model=result.response_model,
                    finish_reason=result.finish_reason, tokens_in=result.tokens_in,
                    tokens_out=result.tokens_out,
                )
            self._emit("agent.task.completed", payload)
        else:
            self._move_step(st, S.FAILED)
            st.error, st.error_type = outcome.error, outcome.error_type
            st.traceback = outcome.traceback
            self._emit("agent.task.failed", {
                **payload, "error": outcome.error, "error_type": st.error_type,
                "traceback": st.traceback,
            })
        signal_id = rt.signal_ids.pop((st.step_id, st.index), None)
        if signal_id is not None:  # taken in the same commit as the result
            self._fx.signals_taken.append(signal_id)

    def _spend(self, st: StepState, result: StepResult) -> None:
        """The spend ledger's row (a for_each step's cost is its instances' rows)."""
        rt = self.run
        if st.index < 0 and rt.compiled.step(st.step_id).for_each is not None:
            return
        self._fx.spend.append(SpendRow(
            st.run_id, st.step_id, st.index, st.finished_at or self._now, rt.row.workflow,
            result.model, result.tokens_in, result.tokens_out, result.cost_usd,
        ))

    def _for_each_done(self, parent: StepState) -> None:
        instances = self.run.instances[parent.step_id]
        output = [i.output for i in instances]
        try:
            blob = self._encode(parent.step_id, output)
        except StepError as exc:
            self._record(parent, Outcome(error=str(exc), error_type=type(exc).__name__))
            self._step_done(parent)
            return
        result = StepResult(
            output=output,
            cost_usd=sum(i.cost_usd for i in instances),
            tokens_in=sum(i.tokens_in for i in instances),
            tokens_out=sum(i.tokens_out for i in instances),
        )
        fallback = any(i.fallback_used for i in instances)
        self._record(parent, Outcome(result, blob, fallback_used=fallback))
        self._step_done(parent)

    def _step_done(self, st: StepState) -> None:
        step = self.run.compiled.step(st.step_id)
        if st.status == _FAILED and not step.optional:
            self._stop(R.FAILED, f"step {st.step_id} failed: {st.error}", SYSTEM_ACTOR)
        self._advance(self.run.compiled.plan.dependents[st.step_id])

    def _skip(self, st: StepState, reason: str) -> None:
        self._move_step(st, S.SKIPPED)
        st.finished_at = self._now
        self._emit("agent.task.skipped", {"step": st.step_id, "reason": reason})

    def _cancel_step(self, st: StepState, reason: str) -> None:
        self._move_step(st, S.CANCELLED)
        st.finished_at, st.error = self._now, reason
        payload = {"step": st.step_id, "index": st.index, "reason": reason}
        self._emit("agent.task.cancelled", payload)
        self._fx.cancel.append((st.step_id, st.index))

    # -- stopping, compensation, completion ---------------------------------------------------

    def _stop(self, outcome: RunStatus, reason: str, actor: Actor) -> None:
        row = self.run.row
        if row.stopping is not None or row.done:
            return
        row.stopping, row.error = outcome.value, reason
        self._fx.run = True
        self._emit("run.stopping", {"outcome": outcome.value, "reason": reason}, actor)
        for st in list(self.run.all_states()):
            if st.status in _LIVE:  # ready: held back by a pause
                self._cancel_step(st, reason)
        self._advance(self.run.compiled.plan.order)

    def _maybe_finish(self) -> None:
        rt = self.run
        if rt.row.status != _RUN_RUNNING or rt.compensating:
            return
        # Sinks come last in plan order and stay open longest: scanning backwards stops early.
        if any(st.status in STEP_OPEN for st in reversed(rt.steps.values())):
            return
        if rt.row.stopping is not None:
            pending = self._to_compensate()
            if pending:
                rt.compensating = True
                self._fx.compensate = pending
                return
        self._complete()

    def _to_compensate(self) -> list[StepState]:
        rt = self.run
        states = [
            st
            for st in rt.compensation_units()
            if st.status == _SUCCEEDED
            and st.compensation_error is None
            and rt.compiled.step(st.step_id).compensate is not None
        ]
        return sorted(states, key=lambda s: s.completed_seq or 0, reverse=True)

    def _complete(self) -> None:
        rt = self.run
        row = rt.row
        units = list(rt.compensation_units())
        parents = rt.steps.values()
        failed = sum(1 for s in units if s.compensation_error is not None)
        ran = failed + sum(1 for s in units if s.status == _COMPENSATED)
        degraded = any(
            s.status == _FAILED or s.fallback_used or (s.status == _SKIPPED and s.error)
            for s in parents
        )
        status = final_status(
            row.stopping, degraded=degraded, compensations_ran=ran, compensations_failed=failed
        )
        self._move_run(RunStatus(status))
        # The results' cost and the ledger-booked calls no result counts (a failed step's
        # calls, a retried attempt's): what the spend ledger holds for the run.
        usd, tokens_in, tokens_out = rt.booked.outside_results()
        row.cost_usd = sum(s.cost_usd for s in parents) + usd
        row.tokens_in = sum(s.tokens_in for s in parents) + tokens_in
        row.tokens_out = sum(s.tokens_out for s in parents) + tokens_out
        self._fx.disarm = True
        self._finalize()

    def _finalize(self) -> None:
        row = self.run.row
        row.finished_at = self._now
        self._emit("run.completed", {
            "status": row.status,
            "error": row.error,
            "duration_s": round(row.finished_at - (row.started_at or row.created_at), 6),
            **self._trace_facts(),
        })
        if row.status in RUN_DEAD:
            failed_steps = tuple(
                s.step_id for s in self.run.steps.values() if s.status in _FAILURES
            )
            self._fx.dead_letter = DlqEntry(
                row.run_id, row.workflow, row.status, row.error, failed_steps, row.finished_at
            )
        self._fx.finished = True

    # -- the one place a status changes ---------------------------------------------------------

    def _move_run(self, target: RunStatus) -> None:
        self._fx.transitions.append(move_run(self.run.row, target, self._now))
        self._fx.run = True

    def _move_step(self, st: StepState, target: StepStatus) -> None:
        self._fx.transitions.append(move_step(st, target, self._now))
        self._journal(st)

    def _journal(self, st: StepState) -> None:
        self._fx.steps[(st.step_id, st.index)] = st

    def _emit(
        self, event_type: str, payload: dict[str, Any], actor: Actor = SYSTEM_ACTOR
    ) -> None:
        self._fx.notices.append((event_type, payload, actor))

    def _trace_facts(self) -> dict[str, Any]:
        """What a tracer needs to place the run's spans, in whichever process runs it: when
        it was queued, and the span it was started under (if any)."""
        row = self.run.row
        facts: dict[str, Any] = {"workflow": row.workflow, "queued_at": row.created_at}
        if row.trace_parent is not None:
            facts["trace_parent"] = row.trace_parent
        return facts

    def _arm(self) -> None:
        row, limit = self.run.row, self.run.workflow.timeout_s
        if limit is not None and row.started_at is not None:
            self._fx.arm_at = row.started_at + limit

    def _begin(self, now: float) -> None:
        self._fx = Effects()
        self._now = now


def _action_facts(action: Action) -> dict[str, Any]:
    """An action's kind, and for an `llm` call its provider and model (when not templated)."""
    if isinstance(action, LlmAction):
        return {"kind": action.kind, "provider": action.provider, "model": action.model}
    return {"kind": action.kind}


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
