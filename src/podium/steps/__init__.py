"""Step kinds: one runner per kind, looked up by the action's `kind`."""

from __future__ import annotations

from podium.steps.agent_kinds import LlmAgentRunner, SimAgentRunner
from podium.steps.base import (
    CallEstimate,
    CallUsage,
    GuardedCall,
    StepContext,
    StepHost,
    StepResult,
    StepRunner,
    UsageLedger,
)
from podium.steps.http import HttpRunner
from podium.steps.n8n import N8nRunner
from podium.steps.python import PythonRunner
from podium.steps.wait import WaitRunner
from podium.steps.workflow import WorkflowRunner

_HTTP = HttpRunner()  # n8n webhooks share its pooled client

RUNNERS: dict[str, StepRunner] = {
    "python": PythonRunner(),
    "http": _HTTP,
    "n8n": N8nRunner(_HTTP),
    "llm": LlmAgentRunner(),  # an agent loop when the step has tools
    "sim": SimAgentRunner(),
    "wait": WaitRunner(),
    "workflow": WorkflowRunner(),
}


async def close_runners() -> None:
    """Closes pooled connections (the http client) of every runner that keeps some."""
    for runner in RUNNERS.values():
        aclose = getattr(runner, "aclose", None)
        if aclose is not None:
            await aclose()


__all__ = [
    "RUNNERS",
    "CallEstimate",
    "CallUsage",
    "GuardedCall",
    "StepContext",
    "StepHost",
    "StepResult",
    "StepRunner",
    "UsageLedger",
    "close_runners",
]
