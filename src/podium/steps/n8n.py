"""The `n8n` kind: triggers an n8n workflow through its webhook, over the `http` kind's client.

With `wait`, the "Respond to Webhook" reply is the output; without, only the acceptance counts.
"""

from __future__ import annotations

from podium.model.workflow import Action, HttpAction, N8nAction
from podium.steps.base import StepContext, StepHost, StepResult
from podium.steps.http import HttpRunner, response_output


class N8nRunner:
    """Shares the http runner's pooled client, error mapping and Idempotency-Key header."""

    def __init__(self, http: HttpRunner) -> None:
        self._http = http

    async def run(self, action: Action, ctx: StepContext, host: StepHost) -> StepResult:
        assert isinstance(action, N8nAction)
        response = await self._http.request(as_http(action), ctx)
        if not action.wait:
            return StepResult(output={"accepted": True, "status": response.status_code})
        return StepResult(output=response_output(response))


def as_http(action: N8nAction) -> HttpAction:
    """The webhook call as an `http` action: POST sends `input` as JSON, GET as the query."""
    return HttpAction(
        kind="http",
        method=action.method,
        url=action.webhook,
        headers=action.headers,
        # Always a JSON object, maybe empty, so the n8n side can rely on `$json.body`.
        body=action.input if action.method == "POST" else None,
        input=action.input,
    )
