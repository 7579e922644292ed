"""Whole-workflow checks that need the planner, the step kinds or the pricing table.

Every caller (CLI, API, SDK) loads through here, so all problems come out at once, model's too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from podium.model import expressions, loader
from podium.model.advice import schema_read_problems
from podium.model.policy import TrustPolicy
from podium.model.pricing import DEFAULT_PRICING, Pricing, missing_price
from podium.model.validate import Part, Problem, action_parts, step_needs
from podium.model.workflow import Workflow
from podium.plan.graph import find_cycles
from podium.steps.python import CallNotFound, resolve_call

_CALL = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def load_workflow(
    path: str | Path, *, pricing: Pricing = DEFAULT_PRICING, resolve_calls: bool = True
) -> Workflow:
    """Reads and validates a `.yaml`/`.yml`/`.json` workflow; raises WorkflowInvalid."""
    return loader.load_workflow(path, check=WorkflowChecks(pricing, resolve_calls))


def parse_workflow(
    data: Any,
    source: str = "workflow",
    base_dir: Path | None = None,
    resolve_calls: bool = True,
    *,
    policy: TrustPolicy | None = None,
    pricing: Pricing = DEFAULT_PRICING,
) -> Workflow:
    """Validates already-parsed data (see `podium.model.loader.parse_workflow`); models are
    priced from `pricing`, and `call:`s are imported unless `resolve_calls` is False."""
    check = WorkflowChecks(pricing, resolve_calls)
    return loader.parse_workflow(data, source, base_dir, policy=policy, check=check)


@dataclass(frozen=True)
class WorkflowChecks:
    """The `loader.Check` of this layer: cycles, each action's call and model price, and
    reads of structured llm answers against their schemas."""

    pricing: Pricing
    resolve_calls: bool = True

    def __call__(self, data: Mapping[str, Any], found: Sequence[Problem]) -> list[Problem]:
        problems = list(_cycle_problems(step_needs(data)))
        # A call with a problem already (one the trust policy forbids) is never imported:
        # importing runs its module's code.
        reported = {problem.location for problem in found}
        for part in action_parts(data):
            if self.resolve_calls and f"{part.prefix}.call" not in reported:
                problems += _call_problems(part)
            problems += _price_problems(part, self.pricing)
        return problems + schema_read_problems(data)


def _cycle_problems(needs: Mapping[str, list[str]]) -> Iterator[Problem]:
    # A step needing itself is reported on its own `needs` already.
    others = {step: [n for n in names if n != step] for step, names in needs.items()}
    for cycle in find_cycles(others):
        yield Problem("steps", "cycle " + " -> ".join(cycle))


def _call_problems(part: Part) -> list[Problem]:
    """Imports a python step's `call` now, so a typo fails validation rather than the run."""
    call = part.action.get("call")
    if part.action.get("kind") != "python" or not isinstance(call, str) or not _CALL.match(call):
        return []  # a malformed call is reported by pydantic
    try:
        resolve_call(call)
    except CallNotFound as exc:
        return [Problem(f"{part.prefix}.call", f"{exc} (got {call!r})")]
    return []


def _price_problems(part: Part, pricing: Pricing) -> list[Problem]:
    model = part.action.get("model")
    if part.action.get("kind") != "llm" or not isinstance(model, str):
        return []
    if expressions.has_template(model) or pricing.price(model) is not None:
        return []  # a rendered model is priced when the step runs
    return [Problem(f"{part.prefix}.model", f"{missing_price(model)} (got {model!r})")]
