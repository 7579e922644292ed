"""A provider model for agent loops: each turn is one `converse` call of the `llm` kind.

The loop keeps one provider-neutral conversation; the `llm` kind's wire code translates it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

from podium.model.llm import LlmRequest, estimate_tokens, estimate_usage
from podium.model.pricing import Pricing
from podium.steps.agent import Estimate, ToolCall, ToolDef, Turn
from podium.steps.base import CallUsage


class Reply(Protocol):
    """A provider's answer to one call, parsed (what the `llm` kind's reply holds)."""

    text: str
    finish_reason: str | None
    model: str | None
    booked: CallUsage | None  # what the spend ledger booked for the call
    structured: Any
    has_structured: bool

    @property
    def tool_calls(self) -> Sequence[Any]:
        """Each with `id`, `name`, `arguments` (a dict, or None) and `raw_arguments`."""


# One provider call for the conversation so far, booked in the spend ledger as it ends.
Converse = Callable[[list[dict[str, Any]]], Awaitable[Reply]]


class ConverseModel:
    """The step's provider, asked one turn at a time through `converse`."""

    ledgered = True

    def __init__(
        self, converse: Converse, request: LlmRequest, tools: Sequence[ToolDef], pricing: Pricing
    ) -> None:
        self._converse = converse
        self._request = request
        self._pricing = pricing
        self.name = request.model
        self._tool_tokens = estimate_tokens(
            [[t.name, t.description, t.input_schema] for t in tools]
        )

    def estimate(self, messages: Sequence[Mapping[str, Any]]) -> Estimate:
        conversation = [dict(m) for m in messages]
        tokens_in, tokens_out = estimate_usage(replace(self._request, messages=conversation))
        tokens_in += self._tool_tokens
        return Estimate(tokens_in, tokens_out, self._pricing.cost_usd(self.name, tokens_in,
                                                                       tokens_out))

    async def reply(self, messages: list[dict[str, Any]], turn: int) -> Turn:
        reply = await self._converse(messages)
        booked = reply.booked
        return Turn(
            text=reply.text,
            calls=tuple(
                ToolCall(c.id, c.name, c.arguments, c.raw_arguments) for c in reply.tool_calls
            ),
            finish_reason=reply.finish_reason,
            model=reply.model or self.name,
            tokens_in=booked.tokens_in if booked else 0,
            tokens_out=booked.tokens_out if booked else 0,
            usd=booked.usd if booked else 0.0,
            structured=reply.structured,
            has_structured=reply.has_structured,
        )
