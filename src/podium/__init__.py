"""podium: a durable orchestration engine for AI-agent and workflow pipelines.

The public SDK: define (`podium.sdk`, in Python) or load (YAML) a workflow, open a store and a
bus, run it with an Engine.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from podium import check, sdk
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
from podium.model import Step, Workflow
from podium.model.policy import TrustPolicy
from podium.plan import Plan, build_plan
from podium.sdk import WorkflowDef, from_yaml
from podium.settings import Settings
from podium.steps import StepContext, StepResult
from podium.store import open_store

__version__ = "0.1.0"


def load_workflow(
    path: str | Path, *, settings: Settings | None = None, resolve_calls: bool = True
) -> Workflow:
    """Reads and validates a workflow file, pricing its models as `settings` (default:
    `Settings()`, the environment's) say; raises WorkflowInvalid with every problem."""
    pricing = (settings or Settings()).control.pricing
    return check.load_workflow(path, pricing=pricing, resolve_calls=resolve_calls)


def parse_workflow(
    data: Any,
    source: str = "workflow",
    base_dir: Path | None = None,
    resolve_calls: bool = True,
    *,
    policy: TrustPolicy | None = None,
    settings: Settings | None = None,
) -> Workflow:
    """Validates a workflow given as data (a dict), as `load_workflow` does a file."""
    pricing = (settings or Settings()).control.pricing
    return check.parse_workflow(
        data, source, base_dir, resolve_calls, policy=policy, pricing=pricing
    )


async def run_async(
    workflow: Workflow | WorkflowDef, inputs: Mapping[str, Any] | None = None, *,
    settings: Settings | None = None,
) -> RunSummary:
    """Runs one workflow (loaded, or a `@podium.sdk.workflow`) to the end on the configured
    store and bus; returns its summary. Without `settings`, `Settings()`: PODIUM_* variables,
    PODIUM_CONFIG, PODIUM_PRICING_FILE."""
    settings = settings or Settings()
    if isinstance(workflow, WorkflowDef):
        workflow = workflow.build(settings=settings)
    secrets = load_secrets(settings.control.secrets, os.environ)
    async with open_store(settings.store, durability=settings.durability) as store, \
            open_bus(settings.bus) as bus, Engine(store, bus, settings, secrets=secrets) as engine:
        return await engine.run(workflow, inputs)


def run(
    workflow: Workflow | WorkflowDef, inputs: Mapping[str, Any] | None = None, *,
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
    "from_yaml",
    "load_workflow",
    "open_bus",
    "open_store",
    "parse_workflow",
    "run",
    "run_async",
    "sdk",
]
