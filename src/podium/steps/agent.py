"""Agent loops: a model calls tools turn by turn, within bounds, and survives a crash mid-loop.

Durability. A turn is a model reply, then the tool calls it asked for. Each reply is kept under
`agent/<idempotency key>/turn/<n>` in the store's cache table as soon as it arrives (before any
of its tools start), so a restarted attempt replays the same replies instead of asking the
model again (it may well ask for other calls). The cache table is the one durable keyed record
a step kind may write without a migration; its entries live `TURN_TTL_S` (30 days), far past
any run's lease. Each tool call runs as a child run of a one-step workflow whose run id
derives from (step, turn, call index): the engine's nested-run path reuses a finished child's
output and resumes an unfinished one, so a completed tool call never runs twice, and every
step policy (retries, timeouts, circuits, limits, budgets, audit) applies to it as to any step.

Guards. Each model call passes the engine's budgets, circuit and rate limits as a call of its
own (`StepHost.guard_call`), just before it is sent: a budget stops the loop between two turns
with no request past it. A replayed turn makes no call and passes no guard.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar

from podium.errors import NonRetryable, StepError
from podium.model.workflow import AgentLoop, Tool
from podium.steps.base import CallEstimate, CallUsage, StepContext, StepHost, StepResult
from podium.steps.llm import parse_json_reply
from podium.steps.tool_schema import arguments_problem

TURN_TTL_S = 30 * 24 * 3600.0
DEFAULT_LOOP = AgentLoop()
TURN_EVENT = "agent.task.turn"
MAX_RESULT_CHARS = 64_000  # one tool result as fed back to the model
_ARG_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
_WORKFLOW_CHARS = re.compile(r"[^a-z0-9_.-]+")
T = TypeVar("T")


class LoopBound(NonRetryable):
    """A bound of the loop was hit: asking again would hit it again (a fallback may run)."""


@dataclass(frozen=True, slots=True)
class AnswerRule:
    """What the final answer must be: JSON (`json_output`), valid against `schema` when
    given. A reply that is not is told why and asked again, within `max_turns`."""

    schema: dict[str, Any] | None = None
    json: bool = False

    def judge(self, turn: Turn) -> tuple[Any, str | None]:
        """(the answer's value, None) or (None, what is wrong with it)."""
        if self.schema is None and not self.json:
            return None, None
        if turn.has_structured:
            value = turn.structured
        else:
            try:
                value = parse_json_reply(turn.text)
            except StepError:
                return None, "That reply is not valid JSON."
        if self.schema is not None:
            problem = arguments_problem(value, self.schema)
            if problem is not None:
                return None, f"That reply does not match the required JSON Schema: {problem}."
        return value, None


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One call the model asked for; `arguments` is None when they were not a JSON object."""

    id: str
    name: str
    arguments: dict[str, Any] | None
    raw_arguments: str = ""


@dataclass(frozen=True, slots=True)
class Turn:
    """One model reply, as kept durably and replayed after a restart."""

    text: str
    calls: tuple[ToolCall, ...] = ()
    finish_reason: str | None = None
    model: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    usd: float = 0.0
    structured: Any = None  # the final answer's object, when an output schema asked for one
    has_structured: bool = False

    def record(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "calls": [[c.id, c.name, c.arguments, c.raw_arguments] for c in self.calls],
            "finish_reason": self.finish_reason,
            "model": self.model,
            "tokens": [self.tokens_in, self.tokens_out],
            "usd": self.usd,
            "structured": [self.structured] if self.has_structured else None,
        }

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> Turn:
        structured = data.get("structured")
        tokens_in, tokens_out = data.get("tokens") or (0, 0)
        return cls(
            text=str(data.get("text") or ""),
            calls=tuple(ToolCall(*call) for call in data.get("calls") or ()),
            finish_reason=data.get("finish_reason"),
            model=data.get("model"),
            tokens_in=int(tokens_in),
            tokens_out=int(tokens_out),
            usd=float(data.get("usd") or 0.0),
            structured=structured[0] if structured else None,
            has_structured=structured is not None,
        )

    def assistant_message(self) -> dict[str, Any]:
        """The reply in the provider-neutral conversation (the wire code translates it)."""
        message: dict[str, Any] = {"role": "assistant", "content": self.text}
        if self.calls:
            message["tool_calls"] = [
                {"id": c.id, "name": c.name, "arguments": c.arguments or {}} for c in self.calls
            ]
        return message


@dataclass(frozen=True, slots=True)
class ToolDef:
    """A tool as the model sees it (name, description, arguments' schema) and as it runs."""

    name: str
    description: str
    input_schema: dict[str, Any]
    tool: Tool


@dataclass(frozen=True, slots=True)
class Estimate:
    """At most what the next model call may use (prompt estimate, every output token)."""

    tokens_in: int
    tokens_out: int
    usd: float


class Model(Protocol):
    """What the loop asks of a model: a priced estimate, then a reply (booked by the model
    in the spend ledger when `ledgered`)."""

    ledgered: bool
    name: str

    def estimate(self, messages: Sequence[Mapping[str, Any]]) -> Estimate: ...

    async def reply(self, messages: list[dict[str, Any]], turn: int) -> Turn: ...


@dataclass(slots=True)
class _Spent:
    turns: int = 0
    tool_calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    usd: float = 0.0
    fresh_in: int = 0  # this attempt's calls, for the step result of an unledgered model
    fresh_out: int = 0
    fresh_usd: float = 0.0
    log: list[dict[str, Any]] = field(default_factory=list)

    def add(self, turn: Turn, fresh: bool) -> None:
        self.turns += 1
        self.tokens_in += turn.tokens_in
        self.tokens_out += turn.tokens_out
        self.usd += turn.usd
        if fresh:
            self.fresh_in += turn.tokens_in
            self.fresh_out += turn.tokens_out
            self.fresh_usd += turn.usd


@dataclass(frozen=True, slots=True)
class Answer:
    """How a loop ended: the final turn, its judged value (None without a rule), the spend."""

    turn: Turn
    value: Any
    spent: _Spent


@dataclass(frozen=True, slots=True)
class ToolResult:
    call: ToolCall
    content: str
    is_error: bool

    def message(self) -> dict[str, Any]:
        return {
            "role": "tool",
            "tool_call_id": self.call.id,
            "name": self.call.name,
            "content": self.content,
            "is_error": self.is_error,
        }


class AgentRun:
    """One attempt of a step's loop: replays the kept turns, then asks for new ones."""

    def __init__(
        self,
        model: Model,
        tools: Sequence[ToolDef],
        bounds: AgentLoop | None,
        ctx: StepContext,
        host: StepHost,
        rule: AnswerRule | None = None,
    ) -> None:
        self.model = model
        self.rule = rule or AnswerRule()
        self.tools = {t.name: t for t in tools}
        self.bounds = bounds or DEFAULT_LOOP
        self.ctx = ctx
        self.host = host
        self.prefix = f"agent/{ctx.idempotency_key}"
        self.spent = _Spent()
        self.deadline: float | None = None

    async def run(self, messages: list[dict[str, Any]]) -> Answer:
        """Turns until the model answers (as the rule wants) without tool calls; a bound hit
        raises LoopBound."""
        await self._start_clock()
        bounds = self.bounds
        problem = "the model still asked for tools"
        for number in range(1, bounds.max_turns + 1):
            turn = await self._turn(messages, number)
            messages.append(turn.assistant_message())
            if not turn.calls:
                value, wrong = self.rule.judge(turn)
                if wrong is None:
                    return Answer(turn, value, self.spent)
                problem = wrong
                # Told why, the model answers again (a replayed turn is told the same).
                messages.append({"role": "user", "content": f"{problem} Answer again."})
                continue
            problem = "the model still asked for tools"
            if number == bounds.max_turns:
                break
            if self.spent.tool_calls + len(turn.calls) > bounds.max_tool_calls:
                raise LoopBound(
                    f"agent loop hit max_tool_calls={bounds.max_tool_calls}: turn {number}"
                    f" asked for {len(turn.calls)} more after {self.spent.tool_calls}"
                )
            self.spent.tool_calls += len(turn.calls)
            results = await self._timed(self._run_tools(number, turn.calls), f"turn {number}")
            messages.extend(result.message() for result in results)
        raise LoopBound(f"agent loop hit max_turns={bounds.max_turns}: {problem}")

    # -- turns ------------------------------------------------------------------------------

    async def _start_clock(self) -> None:
        if self.bounds.timeout_s is None:
            return
        key = f"{self.prefix}/start"
        started = await self.host.cache_get(key)
        if not isinstance(started, int | float):
            started = self.host.clock.now()
            await self.host.cache_put(key, started, TURN_TTL_S)
        self.deadline = float(started) + self.bounds.timeout_s

    async def _turn(self, messages: list[dict[str, Any]], number: int) -> Turn:
        key = f"{self.prefix}/turn/{number}"
        kept = await self.host.cache_get(key)
        if isinstance(kept, dict):
            turn = Turn.from_record(kept)
            self.spent.add(turn, fresh=False)
            return turn
        guess = self._check_spend(messages, number)
        asked = self.host.clock.now()
        turn = await self._timed(self._ask(messages, number, guess), f"turn {number}")
        latency_s = self.host.clock.now() - asked
        # Kept before any tool starts: after a crash the same calls are replayed, never asked
        # for again. A failed write fails the attempt (its retry asks the model again).
        await self.host.cache_put(key, turn.record(), TURN_TTL_S)
        self.spent.add(turn, fresh=True)
        self.host.note(self.ctx, TURN_EVENT, self._turn_event(number, turn, latency_s))
        return turn

    def _turn_event(self, number: int, turn: Turn, latency_s: float) -> dict[str, Any]:
        return {
            "step": self.ctx.step_id,
            "index": self.ctx.index,
            "turn": number,
            "model": turn.model,
            "latency_s": round(latency_s, 6),
            "tool_calls": [{"id": c.id, "name": c.name} for c in turn.calls],
            "tokens_in": turn.tokens_in,
            "tokens_out": turn.tokens_out,
            "cost_usd": turn.usd,
            "finish_reason": turn.finish_reason,
        }

    async def _ask(self, messages: list[dict[str, Any]], number: int, guess: Estimate) -> Turn:
        """One model call, passed through the engine's guards first (budgets, the circuit,
        rate limits: each call of the loop is theirs to refuse, hold back or count, as an
        attempt is). A refusal says which turn the loop stopped before."""
        estimate = CallEstimate(guess.tokens_in + guess.tokens_out, guess.usd)
        asked = False
        try:
            async with self.host.guard_call(self.ctx, estimate) as call:
                asked = True
                turn = await self.model.reply(list(messages), number)
                call.settle(CallUsage(turn.model, turn.tokens_in, turn.tokens_out, turn.usd))
        except NonRetryable as exc:
            if not asked:  # no request was sent: the loop ends here (a fallback may run)
                exc.args = (f"{exc}; the agent loop stopped before turn {number}", *exc.args[1:])
            raise
        return turn

    def _check_spend(self, messages: Sequence[Mapping[str, Any]], number: int) -> Estimate:
        """Before each model call: a call that could pass a bound is not made. Returns the
        call's estimate (its worst case), which the guards hold for it too."""
        bounds, spent = self.bounds, self.spent
        if self.deadline is not None and self.host.clock.now() >= self.deadline:
            raise LoopBound(f"agent loop hit timeout={bounds.timeout_s:g}s before turn {number}")
        guess = self.model.estimate(messages)
        if bounds.max_usd is None and bounds.max_tokens is None:
            return guess
        if bounds.max_usd is not None and spent.usd + guess.usd > bounds.max_usd + 1e-12:
            raise LoopBound(
                f"agent loop hit max_usd={bounds.max_usd:g} before turn {number}: spent"
                f" ${spent.usd:.6f}, the next call may cost up to ${guess.usd:.6f}"
            )
        used = spent.tokens_in + spent.tokens_out
        if bounds.max_tokens is not None and used + guess.tokens_in + guess.tokens_out > (
            bounds.max_tokens
        ):
            raise LoopBound(
                f"agent loop hit max_tokens={bounds.max_tokens} before turn {number}: used"
                f" {used}, the next call may use up to {guess.tokens_in + guess.tokens_out}"
            )
        return guess

    async def _timed(self, work: Awaitable[T], what: str) -> T:
        """`work`, stopped (cancelled) at the loop's deadline on the engine clock."""
        task = asyncio.ensure_future(work)
        if self.deadline is None:
            return await task
        timer = asyncio.ensure_future(
            self.host.clock.sleep(max(self.deadline - self.host.clock.now(), 0.0))
        )
        try:
            await asyncio.wait({task, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            if not task.done():
                task.cancel()  # a tool call's child run is cancelled with it
                await asyncio.wait({task})
        if task.cancelled():
            raise LoopBound(f"agent loop hit timeout={self.bounds.timeout_s:g}s in {what}")
        return task.result()

    # -- tools ------------------------------------------------------------------------------

    async def _run_tools(self, number: int, calls: Sequence[ToolCall]) -> list[ToolResult]:
        """The turn's calls, all at once; each one's failure is a result the model reads."""
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(self._run_tool(number, index, call))
                for index, call in enumerate(calls)
            ]
        results = [task.result() for task in tasks]
        self.spent.log.extend(
            {"turn": number, "id": r.call.id, "name": r.call.name, "ok": not r.is_error}
            for r in results
        )
        return results

    async def _run_tool(self, number: int, index: int, call: ToolCall) -> ToolResult:
        tool = self.tools.get(call.name)
        problem = self._call_problem(call, tool)
        if problem is not None or tool is None:
            return ToolResult(call, problem or "", True)
        arguments = call.arguments or {}
        key = f"{self.ctx.idempotency_key}/tool/{number}/{index}"  # the child run's id
        definition = tool_workflow(self.ctx.workflow, tool, arguments)
        try:
            outputs = await self.host.run_child(
                replace(self.ctx, idempotency_key=key), definition["name"], definition, arguments
            )
        except StepError as exc:
            return ToolResult(call, f"the tool failed: {exc}", True)
        output = outputs.get("call") if isinstance(outputs, dict) else outputs
        return ToolResult(call, _as_content(output), False)

    def _call_problem(self, call: ToolCall, tool: ToolDef | None) -> str | None:
        if tool is None:
            known = ", ".join(sorted(self.tools)) or "none"
            return f"there is no tool named {call.name!r}; the tools are: {known}"
        if call.arguments is None:
            return f"the arguments are not a JSON object (got {call.raw_arguments[:200]!r})"
        bad = [name for name in call.arguments if not _ARG_NAME.match(name)]
        if bad:
            return f"argument names must match {_ARG_NAME.pattern} (got {bad[0][:64]!r})"
        problem = arguments_problem(call.arguments, tool.input_schema)
        if problem is not None:
            return f"the arguments do not match the tool's input_schema: {problem}"
        return None


def tool_workflow(parent: str, tool: ToolDef, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The one-step workflow a tool call runs as: the arguments are its `inputs` and, unless
    the tool sets its own `input`, the body's `input` (read by reference: a model's argument is
    data, never rendered as an expression)."""
    step = tool.tool.step.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    action = step.setdefault("action", {})
    if not action.get("input"):
        action["input"] = {name: f"{{{{ inputs['{name}'] }}}}" for name in arguments}
    name = _WORKFLOW_CHARS.sub("-", f"{parent}.tool.{tool.name}".lower())[:200]
    return {
        "name": name,
        "inputs": {name: {"type": _json_type(value)} for name, value in arguments.items()},
        "steps": {"call": step},
    }


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return "string"  # a string, or null (an optional input left empty)


def _as_content(output: Any) -> str:
    text = output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)
    if len(text) <= MAX_RESULT_CHARS:
        return text
    return text[:MAX_RESULT_CHARS] + f"... [cut: {len(text)} characters in all]"


def loop_result(model: Model, answer: Answer, rule: AnswerRule) -> StepResult:
    """The step's output: with an output schema, the answer itself (as a plain `llm` step
    gives it); else the answer and what the loop took (turns, calls, tokens, cost)."""
    final, spent = answer.turn, answer.spent
    output: Any = {
        "text": final.text,
        "model": final.model or model.name,
        "finish_reason": final.finish_reason,
        "usage": {"input": spent.tokens_in, "output": spent.tokens_out},
        "cost_usd": spent.usd,
        "turns": spent.turns,
        "tool_calls": spent.log,
    }
    if rule.schema is not None:
        output = answer.value
    elif rule.json:
        output["json"] = answer.value
    return StepResult(
        output=output,
        tokens_in=spent.fresh_in,
        tokens_out=spent.fresh_out,
        cost_usd=spent.fresh_usd,
        model=model.name,
        ledgered=model.ledgered,
    )
