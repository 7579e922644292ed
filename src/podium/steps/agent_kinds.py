"""The `llm` and `sim` kinds with `tools`: each runs an agent loop (steps/agent.py).

An `llm` step whose `base_url` is `sim:` asks the built-in simulated model instead of a
provider: nothing leaves the machine, no key is needed, nothing is booked.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from podium.errors import StepError
from podium.model.llm import ToolSpec, build_request, simulated
from podium.model.workflow import Action, LlmAction, SimAction, Tool
from podium.steps.agent import AgentRun, AnswerRule, Model, ToolDef, loop_result
from podium.steps.base import StepContext, StepHost, StepResult
from podium.steps.llm import LlmRunner, refuse_key_env
from podium.steps.llm_tools import ConverseModel
from podium.steps.llm_wire import Reply
from podium.steps.sim import SimRunner, _latency_s
from podium.steps.sim_agent import SimModel
from podium.steps.tool_schema import input_schema


def tool_defs(tools: Mapping[str, Tool] | None, ctx: StepContext) -> list[ToolDef]:
    return [
        ToolDef(name, tool.description or tool.step.description or name, input_schema(tool, ctx),
                tool)
        for name, tool in (tools or {}).items()
    ]


class LlmAgentRunner(LlmRunner):
    """An `llm` step: one completion, or (with `tools`, or `base_url: sim:`) an agent loop."""

    async def run(self, action: Action, ctx: StepContext, host: StepHost) -> StepResult:
        assert isinstance(action, LlmAction)
        if not action.tools and not simulated(action):
            return await super().run(action, ctx, host)
        request = build_request(action, ctx.pricing)
        tools = tool_defs(action.tools, ctx)
        rule = AnswerRule(_output_schema(action), action.json_output)
        model: Model
        if simulated(action):
            model = SimModel(
                f"sim:{request.model}", tools, output_schema=rule.schema,
                json_answer=action.json_output, hints=action.input,
            )
        else:
            if ctx.policy is not None:
                refuse_key_env(action)
            specs = tuple(ToolSpec(t.name, t.description, t.input_schema) for t in tools)
            asking = replace(request, tools=specs)

            async def converse(messages: list[dict[str, Any]]) -> Reply:
                turn = replace(asking, messages=messages)
                return await self.converse(turn, ctx, host, key_env=action.api_key_env)

            model = ConverseModel(converse, request, tools, ctx.pricing)
        messages: list[dict[str, Any]] = list(request.messages)
        answer = await AgentRun(model, tools, action.loop, ctx, host, rule).run(messages)
        return loop_result(model, answer, rule)


def _output_schema(action: LlmAction) -> dict[str, Any] | None:
    return action.output_schema if isinstance(action.output_schema, dict) else None


class SimAgentRunner(SimRunner):
    """A `sim` step: simulated output, or (with `tools`) a simulated agent loop whose answer
    is `output` when set; `latency` is each turn's, `tokens` and `cost_usd` each turn's."""

    async def run(self, action: Action, ctx: StepContext, host: StepHost) -> StepResult:
        assert isinstance(action, SimAction)
        if not action.tools:
            return await super().run(action, ctx, host)
        if ctx.attempt <= action.fail_times:
            raise StepError(
                f"simulated failure (attempt {ctx.attempt} of fail_times {action.fail_times})"
            )
        tokens = (action.tokens.input, action.tokens.output) if action.tokens else None
        tools = tool_defs(action.tools, ctx)
        rng = random.Random(None if action.seed is None else f"{action.seed}/{ctx.idempotency_key}")

        async def pause() -> None:
            delay = _latency_s(action, rng)
            if delay > 0:
                await host.clock.sleep(delay)

        model = SimModel(
            action.model or "sim", tools, tokens=tokens, usd_per_turn=action.cost_usd,
            answer=action.output, pause=pause,
        )
        prompt = {"role": "user", "content": _as_prompt(action.input)}
        rule = AnswerRule(json=action.output is not None)
        answer = await AgentRun(model, tools, action.loop, ctx, host, rule).run([prompt])
        return loop_result(model, answer, rule)


def _as_prompt(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False) if value else "simulate"
