"""What the control layer sees of one call (`Call`) and what a control must do (`Guard`).

The executor asks every guard before a step attempt calls out and tells each one afterwards.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from podium.model.workflow import Action, HttpAction, LlmAction, N8nAction, PythonAction, Step

# ok: the call succeeded; failed: it was made and failed (timeouts too); refused: a guard
# refused it before any call; cancelled: the attempt was cancelled (or the engine stopped).
CallOutcome = Literal["ok", "failed", "refused", "cancelled"]

# What a Call stands for. attempt: one step attempt, passing every guard. loop: the attempt of
# an agent loop that asks a provider: it holds only what it keeps for its whole life
# (concurrency slots); budgets, circuits and rate limits see each of its model calls instead,
# as a turn (one call of the loop: no slot of its own). Each call is counted once that way.
CallSpan = Literal["attempt", "loop", "turn"]

# (run id or "" for a system event, event type, payload): queued on the run's journal.
Emit = Callable[[str, str, dict[str, Any]], None]


@dataclass(slots=True)
class Call:
    """One attempt of one step instance (or its fallback), or one model call of an agent
    loop's attempt (`span`), as the guards see it."""

    run_id: str
    workflow: str
    step: Step
    index: int  # -1 unless a for_each instance
    attempt: int
    action: Action  # rendered: what will really be called
    context: Mapping[str, Any]  # the expression context (for `limits.key`)
    primary: bool  # False for a fallback (it has its own kind and target, and no agent)
    tokens_in: int = 0  # what the attempt used, filled in after it (0 if unknown)
    tokens_out: int = 0
    cost_usd: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)  # per-guard state between enter/exit
    span: CallSpan = "attempt"
    # A turn's own estimate (its conversation so far), instead of one made from the action.
    estimate_usd: float | None = None
    estimate_tokens: float | None = None

    @property
    def agent(self) -> str | None:
        return self.step.agent if self.primary else None

    @property
    def target(self) -> str:
        """`kind:target` of the call: what a circuit or a limit without an agent is keyed by."""
        return call_target(self.action)


def call_target(action: Action) -> str:
    # isinstance, not getattr(..., None): a missing pydantic attribute raises inside, and
    # this runs for every guarded attempt.
    if isinstance(action, HttpAction):
        return f"http:{urlsplit(action.url).netloc or action.url}"
    if isinstance(action, N8nAction):
        return f"n8n:{urlsplit(action.webhook).netloc or action.webhook}"
    if isinstance(action, LlmAction):
        return f"llm:{action.provider}/{action.model or ''}"
    if isinstance(action, PythonAction):
        return f"python:{action.call}"
    return action.kind


class Guard(Protocol):
    def applies(self, step: Step, action: Action, primary: bool) -> bool:
        """Can this guard ever act on calls of `action` (the step's own, or its fallback's)?
        Asked once per action: a guard that cannot is not asked again for its calls."""

    def enter(self, call: Call) -> Awaitable[None] | None:
        """Before the call: None when it may go at once (the hot path: no coroutine to make
        and await), else an awaitable that waits (a slot, tokens) or refuses. A refusal is a
        StepError, raised here or by the awaitable."""

    def exit(self, call: Call, outcome: CallOutcome) -> None:
        """After the call, for every guard whose `enter` returned: release what it took and
        record the outcome. Synchronous, as it runs in `finally` blocks: store work it needs
        is queued on the guard's own task, not awaited here."""


async def pass_guard(guard: Guard, call: Call) -> None:
    """`guard.enter(call)`, waited for if it must wait (what the executor does, for tests)."""
    waiting = guard.enter(call)
    if waiting is not None:
        await waiting
