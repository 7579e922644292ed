"""Runs one step instance: run_step -> _with_fallback -> _with_retries -> _attempt.

It returns an Outcome and never decides what the run does next; the engine does that.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from contextlib import nullcontext
from dataclasses import replace
from typing import Any, Protocol

from podium.clock import SYSTEM_CLOCK, Clock
from podium.control.guard import Call, CallOutcome, Guard
from podium.control.limits import LimitsGuard
from podium.control.plane import ControlPlane
from podium.engine.deadline import within
from podium.engine.ledger import AttemptLedger, UsageSink
from podium.engine.machine import Outcome
from podium.engine.observers import TraceContexts
from podium.engine.rules import backoff_s
from podium.engine.runtime import RunRuntime
from podium.engine.tracebacks import format_traceback
from podium.engine.turns import TurnGuards, reported_wait
from podium.errors import NonRetryable, OutputTooLarge, Retry, StepError, StepTimedOut
from podium.model.expressions import Evaluator, compile_render
from podium.model.llm import guarded_per_turn
from podium.model.policy import TrustPolicy
from podium.model.workflow import Action, RetryPolicy, Step
from podium.redact import Redactor
from podium.steps import RUNNERS, StepContext, StepHost, StepResult
from podium.store import codec
from podium.store.records import StepState
from podium.store.waits import step_key


class AttemptReporter(UsageSink, Protocol):
    """What the executor tells the engine between attempts (each becomes a machine input),
    and the paid calls its attempts book (`UsageSink`)."""

    def retrying(
        self, rt: RunRuntime, st: StepState, attempt: int, error: StepError, delay_s: float
    ) -> None: ...

    async def next_attempt(self, rt: RunRuntime, st: StepState, attempt: int) -> None:
        """Records the attempt count and returns once it is committed (survives a crash)."""

    def falling_back(self, rt: RunRuntime, st: StepState, error: StepError) -> None: ...

    def waited(
        self, rt: RunRuntime, st: StepState, attempt: int, guard: str, waited_s: float
    ) -> None:
        """An attempt waited `waited_s` for a guard (a slot, a rate limit, a budget, a
        circuit's trial) before it could call out."""

    def waiting_for_slot(self, rt: RunRuntime, st: StepState, attempt: int) -> None:
        """The attempt has to wait for a concurrency slot or a rate-limit token."""

    def got_slot(self, rt: RunRuntime, st: StepState, attempt: int) -> None: ...


# Fields never rendered here: a child's definition, an llm answer's JSON Schema (data), and
# tools (a tool body renders in its own call's run, where `inputs` are the model's arguments).
_LITERAL_FIELDS = frozenset({"kind", "definition", "output_schema", "tools"})
Renderers = tuple[tuple[str, Evaluator], ...]
# id -> (action, its fields' renderers); holding the action keeps its id from being reused.
_TEMPLATED: dict[int, tuple[Action, Renderers]] = {}


def _renderers(action: Action) -> Renderers:
    """The fields of an action that hold expressions, each compiled (once per action)."""
    cached = _TEMPLATED.get(id(action))
    if cached is not None:
        return cached[1]
    renderers = tuple(
        (name, renderer)
        for name in type(action).model_fields
        if name not in _LITERAL_FIELDS
        and (renderer := compile_render(getattr(action, name))) is not None
    )
    _TEMPLATED[id(action)] = (action, renderers)
    return renderers


def render_action(action: Action, context: Mapping[str, Any]) -> Action:
    renderers = _renderers(action)
    if not renderers:
        return action
    # What `model_copy(update=...)` does, without its generic copying: this runs per attempt.
    rendered = {name: render(context) for name, render in renderers}
    copy = object.__new__(type(action))
    object.__setattr__(copy, "__dict__", {**action.__dict__, **rendered})
    object.__setattr__(copy, "__pydantic_extra__", action.__pydantic_extra__)
    object.__setattr__(copy, "__pydantic_fields_set__", action.model_fields_set | rendered.keys())
    object.__setattr__(copy, "__pydantic_private__", action.__pydantic_private__)
    return copy


class StepExecutor:
    def __init__(
        self,
        reporter: AttemptReporter,
        host: StepHost,
        secrets: Mapping[str, str],
        redactor: Redactor,
        policy: TrustPolicy,
        max_output_bytes: int,
        control: ControlPlane,
        *,
        clock: Clock = SYSTEM_CLOCK,
        turns: TurnGuards | None = None,
    ) -> None:
        self._clock = clock
        # Agent loops' model calls, guarded one by one (the host's `guard_call`).
        self.turns = turns or TurnGuards(reporter, clock)
        self._control = control
        self._reporter = reporter
        self._host = host
        self._secrets = secrets
        self._redactor = redactor
        self._policy = policy  # for untrusted runs (definitions from the API)
        self._max_output_bytes = max_output_bytes
        self.trace_contexts: TraceContexts | None = None  # set while tracing is on

    async def run_step(self, rt: RunRuntime, st: StepState, step: Step) -> Outcome:
        try:
            result, blob = await self._with_retries(rt, st, step, step.action, step.retry)
            return Outcome(result, blob)
        except StepError as exc:
            return await self._with_fallback(rt, st, step, exc)

    async def run_compensation(self, rt: RunRuntime, st: StepState, step: Step) -> Outcome:
        assert step.compensate is not None
        try:
            result, blob = await self._with_retries(
                rt, st, step, step.compensate, step.retry, counted=False
            )
            return Outcome(result, blob)
        except StepError as exc:
            return _failed(exc)

    async def _with_fallback(
        self, rt: RunRuntime, st: StepState, step: Step, failure: StepError
    ) -> Outcome:
        error = str(failure)
        if step.fallback is None:
            return _failed(failure)
        self._reporter.falling_back(rt, st, failure)
        try:
            result, blob = await self._attempt(rt, st, step, step.fallback, st.attempts)
        except StepError as exc:  # the detail kept is the primary action's
            return _failed(failure, f"{error}; the fallback failed too: {exc}")
        return Outcome(result, blob, fallback_used=True)

    async def _with_retries(
        self,
        rt: RunRuntime,
        st: StepState,
        step: Step,
        action: Action,
        policy: RetryPolicy,
        *,
        counted: bool = True,
    ) -> tuple[StepResult, bytes]:
        attempt = st.attempts if counted else 1
        while True:
            try:
                return await self._attempt(rt, st, step, action, attempt)
            except StepError as exc:
                if not exc.retryable or attempt >= policy.attempts:
                    raise
                after = exc.after if isinstance(exc, Retry) else None
                delay = backoff_s(policy, attempt) if after is None else after
                self._reporter.retrying(rt, st, attempt, exc, delay)
                await self._clock.sleep(delay)
                attempt += 1
                if counted:
                    await self._reporter.next_attempt(rt, st, attempt)

    async def _attempt(
        self, rt: RunRuntime, st: StepState, step: Step, action: Action, attempt: int
    ) -> tuple[StepResult, bytes]:
        ctx = StepContext(
            run_id=rt.run_id,
            step_id=st.step_id,
            attempt=attempt,
            index=st.index if st.index >= 0 else None,
            item=rt.items[st.step_id][st.index] if st.index >= 0 else None,
            idempotency_key=step_key(st.run_id, st.step_id, st.index),
            inputs=rt.row.inputs,
            workflow=rt.row.workflow,
            timeout_s=step.timeout_s,
            policy=None if rt.row.trusted else self._policy,
            pricing=self._control.config.pricing,
            usage=AttemptLedger(
                self._reporter, self._clock, rt.run_id, st.step_id, st.index, rt.row.workflow,
                attempt,
            ),
            traceparent=None if self.trace_contexts is None else self.trace_contexts.traceparent(
                rt.row, st.step_id, st.index, attempt, _role(step, action)
            ),
        )
        try:
            context = rt.context(st, attempt, self._secrets)
            rendered = render_action(action, context)
            guards = self._control.guards_for(step, action) if self._control.guards else ()
            if guards:
                call = Call(
                    rt.run_id, rt.row.workflow, step, st.index, attempt, rendered, context,
                    primary=action is step.action,
                    span="loop" if guarded_per_turn(rendered) else "attempt",
                )
                result = await self._guarded(guards, call, ctx, step.timeout_s, rt, st)
            else:
                body = RUNNERS[action.kind].run(rendered, ctx, self._host)
                result = await within(body, step.timeout_s)
        except TimeoutError:
            timed_out: StepError = StepTimedOut(st.step_id, step.timeout_s)
            if ctx.notes.unretryable:  # the step said another attempt must not follow
                timed_out = NonRetryable(f"{timed_out}; {ctx.notes.unretryable}")
            timed_out.error_type = type(timed_out).__name__
            raise timed_out from None  # the cause is the cancellation: nothing of the step's
        except StepError as exc:
            raise self._masked(exc, exc)  # noqa: B904 (it is the step's own error, as raised)
        except Exception as exc:  # a step body may raise anything: it is a failed attempt
            raise self._masked(StepError(f"{type(exc).__name__}: {exc}"), exc) from exc
        if self._redactor:  # a secret a step echoes back is stored, shown and passed on masked
            result = replace(result, output=self._redactor.value(result.output))
        return result, self.encode(st.step_id, result.output)

    def _masked(self, exc: StepError, cause: BaseException) -> StepError:
        """The error, with the type and traceback of `cause` (what the step raised), every
        known secret masked in its message and traceback (an HTTP error body may echo a
        request header): whatever shows or stores it gets `***`."""
        exc.error_type = exc.error_type or type(cause).__name__
        if exc.traceback is None:
            exc.traceback = format_traceback(cause)
        if self._redactor:
            if exc.args:
                exc.args = (self._redactor.text(str(exc.args[0])), *exc.args[1:])
            exc.traceback = self._redactor.text(exc.traceback)
        return exc

    async def _guarded(
        self, guards: tuple[Guard, ...], call: Call, ctx: StepContext, timeout_s: float,
        rt: RunRuntime, st: StepState,
    ) -> StepResult:
        """The call, once every guard let it through; the attempt's timeout starts after
        the guards (waiting for a slot is not running). An agent loop's attempt (span
        `loop`) passes only its slots here; its model calls pass the rest one by one
        (`TurnGuards`)."""
        entered = 0
        outcome: CallOutcome = "cancelled"
        try:
            for guard in guards:
                waiting = guard.enter(call)
                if waiting is not None:
                    await self._wait_for(guard, waiting, rt, st, call.attempt)
                entered += 1
            outcome = "failed"
            looping = (
                self.turns.looping(call, guards, ctx, rt, st) if call.span == "loop"
                else nullcontext()
            )
            with looping:
                body = RUNNERS[call.action.kind].run(call.action, ctx, self._host)
                result = await within(body, timeout_s)
            call.tokens_in, call.tokens_out = result.tokens_in, result.tokens_out
            call.cost_usd = result.cost_usd
            outcome = "ok"
            return result
        except StepError:
            if entered < len(guards):
                outcome = "refused"
            raise
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            for guard in reversed(guards[:entered]):
                guard.exit(call, outcome)

    async def _wait_for(
        self, guard: Guard, waiting: Awaitable[None], rt: RunRuntime, st: StepState,
        attempt: int,
    ) -> None:
        """Awaits a guard that made the attempt wait, and reports how long (refused too); a
        limit's wait makes the step read `ready` while it lasts."""
        if isinstance(guard, LimitsGuard):
            waiting = self._wait_for_slot(waiting, rt, st, attempt)
        await reported_wait(self._clock, self._reporter, guard, waiting, rt, st, attempt)

    async def _wait_for_slot(
        self, waiting: Awaitable[None], rt: RunRuntime, st: StepState, attempt: int
    ) -> None:
        """Awaits a limit; one that does not let the attempt through at once is reported, so
        the step reads `ready` (not running) until it gets its slot."""
        task = asyncio.ensure_future(waiting)
        try:
            await asyncio.sleep(0)  # the task's first step runs: it is done unless it waits
            if task.done():
                task.result()
                return
            self._reporter.waiting_for_slot(rt, st, attempt)
            await task
        except BaseException:
            task.cancel()
            raise
        self._reporter.got_slot(rt, st, attempt)

    def encode(self, step_id: str, output: Any) -> bytes:
        try:
            return codec.encode(output, max_bytes=self._max_output_bytes)
        except codec.TooLarge as exc:
            limit = self._max_output_bytes
            raise NonRetryable(str(OutputTooLarge(step_id, exc.size_bytes, limit))) from None
        except TypeError as exc:
            raise NonRetryable(
                f"output of step {step_id} is not JSON-serialisable: {exc}"
            ) from None


def _role(step: Step, action: Action) -> str:
    if action is step.action:
        return ""
    return "fallback" if action is step.fallback else "compensate"


def _failed(exc: StepError, error: str | None = None) -> Outcome:
    return Outcome(
        error=str(exc) if error is None else error,
        error_type=exc.error_type or type(exc).__name__,
        traceback=exc.traceback,
    )
