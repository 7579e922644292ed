"""The `sim` kind: a simulated agent (latency, failures, tokens) for demos, load and chaos tests.

It calls nothing; every output it gives is labelled as simulated in the step's log.
"""

from __future__ import annotations

import math
import random
from typing import Any

from podium.errors import NonRetryable, StepError
from podium.model.schema import example_of, schema_problem
from podium.model.workflow import Action, LatencyDist, SimAction
from podium.steps.base import StepContext, StepHost, StepResult


def _latency_s(action: SimAction, rng: random.Random) -> float:
    latency = action.latency
    if not isinstance(latency, LatencyDist):
        return latency
    if latency.p50 <= 0:
        return 0.0
    # Log-normal through p50 and p99: the long tail real model APIs show.
    sigma = max(math.log(max(latency.p99, latency.p50) / latency.p50) / 2.326, 1e-9)
    return rng.lognormvariate(math.log(latency.p50), sigma)


def _answer(schema: dict[str, Any], rng: random.Random) -> Any:
    """A structured answer, as an llm step with this schema would give: valid, or none."""
    value = example_of(schema, rng)
    problem = schema_problem(value, schema)
    if problem is not None:
        raise NonRetryable(f"the simulator cannot answer this output_schema: {problem}")
    return value


class SimRunner:
    async def run(self, action: Action, ctx: StepContext, host: StepHost) -> StepResult:
        assert isinstance(action, SimAction)
        seed = None if action.seed is None else f"{action.seed}/{ctx.idempotency_key}/{ctx.attempt}"
        rng = random.Random(seed)
        delay = _latency_s(action, rng)
        if delay > 0:
            await host.clock.sleep(delay)
        if ctx.attempt <= action.fail_times:
            raise StepError(
                f"simulated failure (attempt {ctx.attempt} of fail_times {action.fail_times})"
            )
        if action.fail_rate and rng.random() < action.fail_rate:
            raise StepError(f"simulated failure (fail_rate {action.fail_rate:g})")
        output = action.output if action.output is not None else action.input or None
        if isinstance(action.output_schema, dict):
            output = _answer(action.output_schema, rng)
        tokens = action.tokens
        return StepResult(
            output=output,
            tokens_in=tokens.input if tokens else 0,
            tokens_out=tokens.output if tokens else 0,
            cost_usd=action.cost_usd,
            model=action.model,
        )
