"""podium: a durable orchestration engine for AI-agent and workflow pipelines.

The public SDK: define or load a workflow, open a store and a bus, run it with an Engine.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Any

from podium.bus import open_bus
from podium.control.secrets import load_secrets
from podium.engine.engine import Engine
from podium.engine.summary import RunSummary
from podium.errors import (
    NonRetryable,
    PodiumError,
    Retry,
    RunFinished,
    RunNotFound,
    StepError,
    StepTimedOut,
    WorkflowInvalid,
)
from podium.events import Event
from podium.model import Step, Workflow, load_workflow, parse_workflow
from podium.plan import Plan, build_plan
from podium.settings import Settings
from podium.steps import StepContext, StepResult
from podium.store import open_store

__version__ = "0.1.0"


async def run_async(
    workflow: Workflow, inputs: Mapping[str, Any] | None = None, *,
    settings: Settings | None = None,
) -> RunSummary:
    """Runs one workflow to the end on the configured store and bus; returns its summary."""
    settings = settings or Settings()
    secrets = load_secrets(settings.control.secrets, os.environ)
    async with open_store(settings.store, durability=settings.durability) as store, \
            open_bus(settings.bus) as bus, Engine(store, bus, settings, secrets=secrets) as engine:
        return await engine.run(workflow, inputs)


def run(
    workflow: Workflow, inputs: Mapping[str, Any] | None = None, *,
    settings: Settings | None = None,
) -> RunSummary:
    """Blocking form of `run_async`, for scripts and notebooks without an event loop."""
    return asyncio.run(run_async(workflow, inputs, settings=settings))


__all__ = [
    "Engine",
    "Event",
    "NonRetryable",
    "Plan",
    "PodiumError",
    "Retry",
    "RunFinished",
    "RunNotFound",
    "RunSummary",
    "Settings",
    "Step",
    "StepContext",
    "StepError",
    "StepResult",
    "StepTimedOut",
    "Workflow",
    "WorkflowInvalid",
    "__version__",
    "build_plan",
    "load_workflow",
    "open_bus",
    "open_store",
    "parse_workflow",
    "run",
    "run_async",
]
