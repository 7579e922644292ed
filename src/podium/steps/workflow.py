"""The `workflow` kind: run another workflow as a child run and return its outputs.

The child's run id derives from the step's idempotency key, so a restart finds the same child.
"""

from __future__ import annotations

from podium.model.workflow import Action, WorkflowAction
from podium.steps.base import StepContext, StepHost, StepResult


class WorkflowRunner:
    async def run(self, action: Action, ctx: StepContext, host: StepHost) -> StepResult:
        assert isinstance(action, WorkflowAction)
        output = await host.run_child(ctx, action.workflow, action.definition, dict(action.input))
        return StepResult(output=output)
