"""The `wait` kind: wait for a signal (human approval, external event) or for a time.

The step's `timeout` bounds the wait; a signal sent before the step waits is kept for it.
"""

from __future__ import annotations

from podium.model.workflow import Action, WaitAction
from podium.steps.base import StepContext, StepHost, StepResult


class WaitRunner:
    async def run(self, action: Action, ctx: StepContext, host: StepHost) -> StepResult:
        assert isinstance(action, WaitAction)
        if action.delay_s is not None or action.until is not None:
            await host.sleep_until(ctx, host.wake_at(ctx, action.delay_s, action.until))
            return StepResult(output=None)
        payload = await host.wait_signal(ctx, action.signal or ctx.step_id)
        return StepResult(output=payload)
