"""Step kinds: one runner per kind, looked up by the action's `kind`.

`llm` and `n8n` plug in here the same way when they land.
"""

from __future__ import annotations

from podium.steps.base import StepContext, StepHost, StepResult, StepRunner
from podium.steps.http import HttpRunner
from podium.steps.python import PythonRunner
from podium.steps.sim import SimRunner
from podium.steps.wait import WaitRunner
from podium.steps.workflow import WorkflowRunner

RUNNERS: dict[str, StepRunner] = {
    "python": PythonRunner(),
    "http": HttpRunner(),
    "sim": SimRunner(),
    "wait": WaitRunner(),
    "workflow": WorkflowRunner(),
}



async def close_runners() -> None:
    """Closes pooled connections (the http client) of every runner that keeps some."""
    for runner in RUNNERS.values():
        aclose = getattr(runner, "aclose", None)
        if aclose is not None:
            await aclose()


__all__ = ["RUNNERS", "StepContext", "StepHost", "StepResult", "StepRunner", "close_runners"]
