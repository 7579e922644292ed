"""What the llm kind's tests share: a StepHost stand-in, a step context, a step spec."""

from __future__ import annotations

import json
from typing import Any

from fake_providers import ANTHROPIC_KEY, OPENAI_KEY, FakeServer

from podium.clock import FakeClock
from podium.model.pricing import DEFAULT_PRICING, Pricing
from podium.model.workflow import LlmAction
from podium.steps.base import StepContext, StepResult
from podium.steps.llm import LlmRunner

KEYS = {"OPENAI_API_KEY": OPENAI_KEY, "ANTHROPIC_API_KEY": ANTHROPIC_KEY}


class FakeHost:
    """The two StepHost services the llm kind uses: secrets and the response cache, whose
    entries expire by `clock` (as the store's do by its clock)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.clock = FakeClock()
        self.cache: dict[str, tuple[Any, float]] = {}
        self.deltas: list[str] = []

    def secret(self, name: str) -> str | None:
        return self.env.get(name)

    async def cache_get(self, key: str) -> Any | None:
        value, expires_at = self.cache.get(key, (None, 0.0))
        return value if expires_at > self.clock.now() else None

    async def cache_put(self, key: str, value: Any, ttl_s: float) -> None:
        self.cache[key] = (json.loads(json.dumps(value)), self.clock.now() + ttl_s)

    def emit_delta(self, ctx: StepContext, text: str) -> None:
        self.deltas.append(text)


def ctx(
    timeout_s: float = 5, pricing: Pricing = DEFAULT_PRICING, attempt: int = 1
) -> StepContext:
    return StepContext(
        run_id="run-1", step_id="ask", attempt=attempt, index=None, item=None,
        idempotency_key="run-1/ask", inputs={}, workflow="w", timeout_s=timeout_s,
        pricing=pricing,
    )


def base_url(server: FakeServer, provider: str, behaviour: str | None = None) -> str:
    prefix = f"{server.url}/{behaviour}" if behaviour else server.url
    return f"{prefix}/v1" if provider == "openai" else prefix


def spec(server: FakeServer, provider: str = "openai", **keys: Any) -> dict[str, Any]:
    model = "gpt-4o-mini" if provider == "openai" else "claude-3-5-haiku-latest"
    behaviour = keys.pop("behaviour", None)
    url = base_url(server, provider, behaviour)
    return {"provider": provider, "model": model, "base_url": url,
            "prompt": "say: hello world", **keys}


async def run_spec(
    runner: LlmRunner, host: FakeHost, spec: dict[str, Any], timeout_s: float = 5,
    pricing: Pricing = DEFAULT_PRICING, attempt: int = 1,
) -> StepResult:
    action = LlmAction.model_validate({"kind": "llm", **spec})
    context = ctx(timeout_s, pricing, attempt)
    return await runner.run(action, context, host)  # type: ignore[arg-type]


def sse_messages(text: str) -> list[tuple[str, dict[str, Any], bool]]:
    """(event type, data, has an id) per SSE message; keep-alive comments skipped."""
    found = []
    for block in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":")
        )
        if fields:
            found.append((fields["event"], json.loads(fields["data"]), "id" in fields))
    return found
