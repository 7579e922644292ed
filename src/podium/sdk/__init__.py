"""Workflows defined in Python: `@workflow` functions calling `@step` functions and kind builders.

The result is the same `Workflow` model a YAML file gives, so plan, validate, API and runs agree.

    from podium import sdk

    @sdk.step(retry=sdk.RetryPolicy(attempts=3, backoff="200ms"))
    def enrich(record: dict[str, Any]) -> dict[str, Any]: ...

    @sdk.workflow(name="enrich-one")
    def enrich_one(record: dict[str, Any]) -> None:
        fetched = sdk.http("https://api.example/x").step("fetch")
        enrich(record=fetched["json"])          # reads fetch's output: runs after it
"""

from __future__ import annotations

from typing import Any

from podium.sdk.actions import (
    Action,
    Agent,
    AgentLoop,
    Latency,
    Tokens,
    Tool,
    agent,
    http,
    llm,
    n8n,
    python,
    sim,
    subworkflow,
    wait,
)
from podium.sdk.flows import WorkflowDef, from_yaml, workflow
from podium.sdk.policies import (
    Budget,
    Circuit,
    Duration,
    Input,
    Limits,
    Resources,
    RetryPolicy,
    StepOptions,
    TriggerRule,
)
from podium.sdk.refs import Ref, StepRef, expr
from podium.sdk.tasks import Task, step

item: Any = Ref("item")  # the current element of a for_each step
index: Any = Ref("index")  # its position
run: Any = Ref("run")  # run.id, run.workflow, run.attempt
secrets: Any = Ref("secrets")  # secrets.NAME, for names allowed in [secrets]
inputs: Any = Ref("inputs")  # the run's inputs (a @workflow's parameters refer to them too)

__all__ = [
    "Action",
    "Agent",
    "AgentLoop",
    "Budget",
    "Circuit",
    "Duration",
    "Input",
    "Latency",
    "Limits",
    "Ref",
    "Resources",
    "RetryPolicy",
    "StepOptions",
    "StepRef",
    "Task",
    "Tokens",
    "Tool",
    "TriggerRule",
    "WorkflowDef",
    "agent",
    "expr",
    "from_yaml",
    "http",
    "index",
    "inputs",
    "item",
    "llm",
    "n8n",
    "python",
    "run",
    "secrets",
    "sim",
    "step",
    "subworkflow",
    "wait",
    "workflow",
]
