"""What a step calls, one typed builder per kind (sim, llm, http, n8n, wait, workflow, python).

An Action is a step's action, a fallback or a compensation; `.step("id", ...)` adds it to the
workflow being defined. Only the fields given are written, so an agent's fill the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Unpack

from pydantic import BaseModel

from podium.sdk.policies import Circuit, Duration, Limits, RetryPolicy, StepOptions, _Policy
from podium.sdk.refs import StepRef, raw
from podium.sdk.trace import current


@dataclass(frozen=True, kw_only=True)
class Latency(_Policy):
    """A simulated latency distribution: median and 99th percentile."""

    p50: Duration
    p99: Duration


@dataclass(frozen=True, kw_only=True)
class Tokens(_Policy):
    """Token counts a simulated call reports (and is priced by)."""

    input: int | None = None
    output: int | None = None


@dataclass(frozen=True, kw_only=True)
class AgentLoop(_Policy):
    """The bounds of an agent loop (an llm step with `tools`); past one the step fails."""

    max_turns: int | None = None
    max_tool_calls: int | None = None
    max_usd: float | None = None
    max_tokens: int | None = None
    timeout: Duration | None = None


# An answer's JSON Schema: inline, a file beside the workflow, or a pydantic model.
OutputSchema = Mapping[str, Any] | str | type[BaseModel]


@dataclass(frozen=True)
class Action:
    """A step kind and the fields given for it, under their YAML names."""

    kind: str
    fields: Mapping[str, Any] = field(default_factory=dict)

    def to_raw(self) -> dict[str, Any]:
        return {"kind": self.kind, **_written(self.fields)}

    def step(self, step_id: str, /, **options: Unpack[StepOptions]) -> StepRef:
        """Adds this action as step `step_id` of the workflow being defined; its handle."""
        return current(step_id).add(step_id, self.to_raw(), options)


@dataclass(frozen=True)
class Agent:
    """A named configuration (an action's fields and policies) that steps start from;
    it lands in the workflow's `agents` the first time a step uses it."""

    name: str
    action: Action
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_raw(self) -> dict[str, Any]:
        return {**self.action.to_raw(), **_written(self.options)}

    def step(
        self, step_id: str, /, *, input: Mapping[str, Any] | None = None,
        **options: Unpack[StepOptions],
    ) -> StepRef:
        """A step that is this agent as configured, given `input`."""
        action = {} if input is None else {"input": raw(input)}
        return current(step_id).add(step_id, action, {**options, "agent": self})


@dataclass(frozen=True, kw_only=True)
class Tool:
    """A tool an llm step's model may call: an action of any kind, outside the DAG, run as a
    durable child run; the model's arguments (checked against `input_schema`) are its input."""

    action: Action
    description: str | None = None
    input_schema: Mapping[str, Any] | type[BaseModel] | None = None
    retry: RetryPolicy | None = None
    timeout: Duration | None = None
    circuit: Circuit | None = None
    limits: Limits | None = None
    fallback: Action | None = None

    def to_raw(self) -> dict[str, Any]:
        schema = self.input_schema
        policy = {
            "description": self.description,
            "input_schema": _schema(schema) if schema is not None else None,
            "retry": self.retry, "timeout": self.timeout, "circuit": self.circuit,
            "limits": self.limits, "fallback": self.fallback,
        }
        return {**self.action.to_raw(), **_written(policy)}


def agent(name: str, action: Action, **options: Unpack[StepOptions]) -> Agent:
    """An agent: `writer = sdk.agent("writer", sdk.sim(model="sim-writer", latency="500ms"))`."""
    return Agent(name, action, dict(options))


def sim(
    *,
    input: Mapping[str, Any] | None = None,
    latency: Duration | Latency | None = None,
    fail_rate: float | None = None,
    fail_times: int | None = None,
    output: Any = None,
    tokens: Tokens | None = None,
    model: str | None = None,
    cost_usd: float | None = None,
    seed: int | None = None,
    output_schema: OutputSchema | None = None,
    tools: Mapping[str, Tool | Action] | None = None,
    loop: AgentLoop | None = None,
) -> Action:
    """A simulated agent (demos, load and chaos tests): its latency, failures and output;
    with `tools`, a simulated agent loop; with `output_schema`, a valid answer."""
    return _action("sim", _agentic(locals()))


def llm(
    *,
    input: Mapping[str, Any] | None = None,
    provider: Literal["openai", "anthropic"] | None = None,
    model: str | None = None,
    tier: Literal["simple", "medium", "complex", "critical"] | None = None,
    system: str | None = None,
    prompt: str | None = None,
    messages: list[Mapping[str, Any]] | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    base_url: str | None = None,
    api_key_env: str | None = None,
    stream: bool | None = None,
    cache: Duration | None = None,
    context_tokens: int | None = None,
    json_output: bool | None = None,
    output_schema: OutputSchema | None = None,
    tools: Mapping[str, Tool | Action] | None = None,
    loop: AgentLoop | None = None,
) -> Action:
    """A chat completion (OpenAI-compatible or Anthropic); `model` or `tier` is needed. With
    `output_schema` (a JSON Schema, a file, or a pydantic model) the answer is validated and
    becomes the output; with `tools`, an agent loop within `loop`'s bounds."""
    return _action("llm", _agentic(locals()))


def http(
    url: str,
    *,
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] | None = None,
    headers: Mapping[str, str] | None = None,
    body: Any = None,
    expect: list[int] | None = None,
    input: Mapping[str, Any] | None = None,
) -> Action:
    """An HTTP request; `expect` lists the accepted statuses (default: any 2xx)."""
    return _action("http", locals())


def n8n(
    webhook: str,
    *,
    method: Literal["POST", "GET"] | None = None,
    wait: bool | None = None,
    headers: Mapping[str, str] | None = None,
    input: Mapping[str, Any] | None = None,
    accept_timeout: Duration | None = None,
    retry_after_send: bool | None = None,
) -> Action:
    """Triggers an n8n workflow through its webhook; `input` is the JSON body. A call whose
    request was sent is not retried unless `retry_after_send` (n8n may have run it)."""
    return _action("n8n", locals())


def wait(
    *,
    signal: str | None = None,
    delay: Duration | None = None,
    until: str | None = None,
    input: Mapping[str, Any] | None = None,
) -> Action:
    """Waits for a signal (`podium signal RUN NAME ...`), a delay, or a time."""
    return _action("wait", locals())


def subworkflow(workflow: str, *, input: Mapping[str, Any] | None = None) -> Action:
    """Runs another workflow as a child run: a registered name, or a file beside this module."""
    return _action("workflow", locals())


def python(
    call: str, *, input: Mapping[str, Any] | None = None,
    isolate: Literal["thread", "process"] | None = None,
) -> Action:
    """A `module:function` named as text; a `@step` function's `.bind(...)` is the typed way."""
    return _action("python", locals())


def _schema(schema: Mapping[str, Any] | str | type[BaseModel]) -> Any:
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return schema.model_json_schema()
    return schema


def _agentic(given: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of an llm or sim action, with its schema and tools written as YAML has them."""
    out = dict(given)
    if out.get("output_schema") is not None:
        out["output_schema"] = _schema(out["output_schema"])
    if out.get("tools") is not None:
        out["tools"] = {
            name: tool.to_raw() if isinstance(tool, Tool | Action) else tool
            for name, tool in out["tools"].items()
        }
    return out


def _action(kind: str, given: Mapping[str, Any]) -> Action:
    return Action(kind, {k: v for k, v in given.items() if v is not None})


def _written(values: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        # A policy, or an action (an agent's fallback or compensation).
        out[key] = value.to_raw() if isinstance(value, _Policy | Action) else raw(value)
    return out
