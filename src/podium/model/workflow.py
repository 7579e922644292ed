"""The workflow definition as frozen pydantic models.

A step is its scheduling policy (needs, trigger, retry, ...) plus an `action`: what to call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_serializer, model_validator

from podium.model.units import Duration, SizeMiB

if TYPE_CHECKING:
    from podium.model.loader import Check

Priority = Literal["critical", "high", "normal", "low"]
TriggerRule = Literal["all_success", "all_done", "one_success", "one_failed", "none_failed"]
InputType = Literal["string", "integer", "number", "boolean", "object", "array"]
PRIORITY_RANK: dict[str, int] = {"critical": 0, "high": 1, "normal": 2, "low": 3}

# Keys that belong to the step's policy; every other key of a step describes its action.
STEP_POLICY_KEYS = frozenset(
    {
        "id",
        "needs",
        "trigger",
        "when",
        "optional",
        "retry",
        "timeout",
        "estimate",
        "resources",
        "for_each",
        "max_parallel",
        "fallback",
        "compensate",
        "agent",
        "description",
        "circuit",
        "limits",
    }
)


class _Strict(BaseModel):
    # No `.inf`/`.nan` (or `1e400`) anywhere: they pass every `ge`/`le` bound silently.
    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False
    )


class RetryPolicy(_Strict):
    """Exponential backoff with jitter; `attempts` counts every attempt, the first included."""

    attempts: int = Field(3, ge=1, le=1000)
    backoff_s: Duration = Field(1.0, alias="backoff")
    factor: float = Field(2.0, ge=1.0)
    max_backoff_s: Duration = Field(30.0, alias="max_backoff")
    jitter: float = Field(0.2, ge=0.0, le=1.0)


class CircuitPolicy(_Strict):
    """A circuit breaker: open after `failures` consecutive failed attempts,
    half-open after `cooldown`, closed again after `successes` successful trial calls."""

    failures: int = Field(5, ge=1)
    cooldown_s: Duration = Field(30.0, alias="cooldown")
    successes: int = Field(1, ge=1)
    half_open_max: int = Field(1, ge=1)  # trial calls let through at once while half-open


class Limits(_Strict):
    """Rate and concurrency limits of an agent (or a provider), shared by every engine."""

    rpm: float | None = Field(None, gt=0)  # requests per minute (token bucket)
    tpm: float | None = Field(None, gt=0)  # tokens per minute, reserved from an estimate
    max_concurrent: int | None = Field(None, ge=1)  # calls in flight at once
    key: str | None = None  # expression: one bucket per value, e.g. "{{ inputs.customer }}"


class Resources(_Strict):
    """What one instance of a step holds while it runs (planning and admission)."""

    cpu: float = Field(0.0, ge=0)
    memory_mib: SizeMiB = Field(0.0, alias="memory")

    @field_serializer("memory_mib")
    def _memory_with_unit(self, memory_mib: float) -> str:
        """`256.0Mi`: a bare number reads back as bytes, so the canonical form names its unit."""
        return f"{Decimal(repr(memory_mib)):f}Mi"

    api_calls: int = Field(0, ge=0)


class LatencyDist(_Strict):
    p50: Duration
    p99: Duration


class TokenCounts(_Strict):
    input: int = Field(0, ge=0)
    output: int = Field(0, ge=0)


class _Action(_Strict):
    input: dict[str, Any] = Field(default_factory=dict)


class PythonAction(_Action):
    kind: Literal["python"]
    call: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
    isolate: Literal["thread", "process"] = "thread"


class HttpAction(_Action):
    kind: Literal["http"]
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = "GET"
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    body: Any = None
    expect: list[int] = Field(default_factory=list)  # empty: any 2xx


class SimAction(_Action):
    """A simulated agent for demos, load and chaos tests. It is a simulator and says so."""

    kind: Literal["sim"]
    latency: Duration | LatencyDist = 0.0
    fail_rate: float = Field(0.0, ge=0.0, le=1.0)
    fail_times: int = Field(0, ge=0)
    output: Any = None
    tokens: TokenCounts | None = None
    model: str | None = None
    cost_usd: float = Field(0.0, ge=0)
    seed: int | None = None
    # Answer with a value valid against this JSON Schema (a file path, as an llm step's),
    # drawn from the seed, as an llm step with output_schema would.
    output_schema: dict[str, Any] | str | None = None
    tools: dict[ToolName, Tool] | None = None  # a simulated agent loop: see docs/agents.md
    loop: AgentLoop | None = None


class WaitAction(_Action):
    kind: Literal["wait"]
    signal: str | None = None
    delay_s: Duration | None = Field(None, alias="delay")
    until: str | None = None


class WorkflowAction(_Action):
    """Runs another workflow as a child run: `workflow` is a registered name or a file path."""

    kind: Literal["workflow"]
    workflow: str
    definition: dict[str, Any] | None = None  # filled by the loader for file paths


# Step keys a tool may not have: a tool is called by its model, not placed in the DAG.
_DAG_KEYS = ("needs", "trigger", "when", "for_each", "max_parallel", "optional", "compensate")


class AgentLoop(_Strict):
    """The bounds of an agent loop (`loop:` on a step with `tools`); past one the step fails
    (not retried; its fallback runs) naming the bound. `timeout` counts on the engine clock
    from the loop's first turn, across attempts and restarts."""

    max_turns: int = Field(10, ge=1, le=1000)  # model calls
    max_tool_calls: int = Field(50, ge=0, le=10_000)
    max_usd: float | None = Field(None, ge=0)
    max_tokens: int | None = Field(None, ge=1)
    timeout_s: Duration | None = Field(None, alias="timeout")


class Tool(_Strict):
    """A tool the model may call: a step body of any kind, outside the DAG. The model's
    arguments (checked against `input_schema`) become the body's `input` and its `inputs`."""

    description: str | None = None
    input_schema: dict[str, Any] | None = None
    step: Step

    @model_validator(mode="before")
    @classmethod
    def _split(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "step" in data:
            return data
        misplaced = [key for key in _DAG_KEYS if key in data]
        if misplaced:
            raise ValueError(f"a tool is not part of the DAG: remove {', '.join(misplaced)}")
        rest = {k: v for k, v in data.items() if k not in ("description", "input_schema")}
        tool = {k: data[k] for k in ("description", "input_schema") if k in data}
        return {**tool, "step": {**rest, "id": "call"}}


ToolName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class LlmAction(_Action):
    """One chat completion from an OpenAI-compatible API (OpenAI, vLLM, Ollama, LiteLLM) or
    Anthropic. A non-empty `input` goes, as JSON, after the `prompt` (or alone, as agent steps'
    agent steps do)."""

    kind: Literal["llm"]
    provider: Literal["openai", "anthropic"] = "openai"
    model: str | None = None  # unset: the pricing table's model for `tier`
    tier: Literal["simple", "medium", "complex", "critical"] | None = None
    system: str | None = None
    prompt: str | None = None
    messages: list[dict[str, Any]] | None = None  # [{role, content}, ...]
    tools: dict[ToolName, Tool] | None = None  # an agent loop: see docs/agents.md
    loop: AgentLoop | None = None
    max_tokens: int = Field(1024, ge=1)
    temperature: float | None = Field(None, ge=0)
    base_url: str | None = None  # unset: the provider's public API
    api_key_env: str | None = None  # unset: OPENAI_API_KEY or ANTHROPIC_API_KEY
    stream: bool = False
    cache_s: Duration | None = Field(None, alias="cache")  # response cache time-to-live
    context_tokens: int | None = Field(None, ge=1)  # keep system + the latest turns that fit
    json_output: bool = False  # parse the reply as JSON into the output's `json`
    # The answer is a JSON value valid against this JSON Schema, and is the step's output.
    # A string is a schema file's path (relative to the workflow file), read by the loader.
    output_schema: dict[str, Any] | str | None = None


class N8nAction(_Action):
    """Triggers an n8n workflow through its webhook; `input` is the JSON body (GET: query)."""

    kind: Literal["n8n"]
    webhook: str
    method: Literal["POST", "GET"] = "POST"
    wait: bool = True  # False: only the acceptance counts, output {"accepted", "status"}
    headers: dict[str, str] = Field(default_factory=dict)
    # wait false: how long after the request was sent an unanswered call counts as accepted.
    accept_s: Duration = Field(2.0, alias="accept_timeout", gt=0)
    # n8n ignores Idempotency-Key: a call that reached it is retried only if this says so.
    retry_after_send: bool = False


Action = Annotated[
    PythonAction | HttpAction | SimAction | WaitAction | WorkflowAction | LlmAction | N8nAction,
    Field(discriminator="kind"),
]
STEP_KINDS = ("python", "http", "sim", "wait", "workflow", "llm", "n8n")


def split_action(raw: dict[str, Any]) -> dict[str, Any]:
    """Moves a flat YAML step's action keys under `action`, as the Step model expects."""
    if "action" in raw:
        return raw
    policy = {k: v for k, v in raw.items() if k in STEP_POLICY_KEYS}
    policy["action"] = {k: v for k, v in raw.items() if k not in STEP_POLICY_KEYS}
    return policy


class Step(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
    needs: tuple[str, ...] = ()
    trigger: TriggerRule = "all_success"
    when: str | bool | None = None
    optional: bool = False
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    timeout_s: Duration = Field(300.0, alias="timeout")
    estimate_s: Duration | None = Field(None, alias="estimate")
    resources: Resources = Field(default_factory=Resources)
    for_each: str | list[Any] | None = None
    max_parallel: int | None = Field(None, ge=1)
    fallback: Action | None = None
    compensate: Action | None = None
    agent: str | None = None
    description: str | None = None
    circuit: CircuitPolicy | None = None
    limits: Limits | None = None
    action: Action

    @model_validator(mode="before")
    @classmethod
    def _split(cls, data: Any) -> Any:
        return split_action(data) if isinstance(data, dict) else data

    @property
    def kind(self) -> str:
        return self.action.kind

    @property
    def planned_s(self) -> float:
        """Duration used for planning: `estimate`, else a sim's latency, else one second."""
        if self.estimate_s is not None:
            return self.estimate_s
        if isinstance(self.action, SimAction):
            latency = self.action.latency
            return latency.p50 if isinstance(latency, LatencyDist) else latency
        return 1.0


Tool.model_rebuild()
LlmAction.model_rebuild()
SimAction.model_rebuild()
Step.model_rebuild()


class InputSpec(_Strict):
    type: InputType = "string"
    required: bool = False
    default: Any = None
    description: str | None = None


class Budget(_Strict):
    """A run's own spend limit (`budget.usd`): the step whose call would pass it fails with
    `budget_exceeded` (no call made). A run's spend never falls, so `throttle` only makes a call
    wait while the run's other calls in flight hold the room it needs; past that it blocks."""

    usd: float | None = Field(None, ge=0, allow_inf_nan=False)
    warn_at: float = Field(0.8, gt=0, le=1)  # fraction of `usd` that raises the warning event
    action: Literal["block", "throttle"] = "block"


class Workflow(_Strict):
    name: str = Field(pattern=r"^[a-z0-9_.-]+$", max_length=200)
    version: int | str = 1
    description: str | None = None
    priority: Priority = "normal"
    timeout_s: Duration | None = Field(None, alias="timeout")
    budget: Budget | None = None
    on_constrained: Literal["queue", "degrade", "reject"] = "queue"
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    agents: dict[str, dict[str, Any]] = Field(default_factory=dict)
    steps: dict[str, Step] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _expand_steps(cls, data: Any) -> Any:
        """Gives each step its id and merges in its agent's configuration (step keys win)."""
        if not isinstance(data, dict) or not isinstance(data.get("steps"), dict):
            return data
        agents: dict[str, Any] = data["agents"] if isinstance(data.get("agents"), dict) else {}
        steps = {}
        for step_id, raw in data["steps"].items():
            if isinstance(raw, dict):
                raw = {**with_agent(raw, agents), "id": step_id}
                for key in ("fallback", "compensate"):
                    if isinstance(raw.get(key), dict):
                        action = with_agent(raw[key], agents)
                        raw[key] = {k: v for k, v in action.items() if k != "agent"}
            steps[step_id] = raw
        return {**data, "steps": steps}

    def to_json(self) -> dict[str, Any]:
        """The canonical form kept with every run (round-trips via `Workflow.model_validate`)."""
        return self.model_dump(mode="json", by_alias=True, exclude_defaults=True)

    def to_yaml(self) -> str:
        """The workflow as a YAML document, steps flat as written by hand; loading it back
        (`from_yaml`, `podium.load_workflow`) gives an equal model."""
        data = self.to_json()
        data["steps"] = {step_id: _flat(step) for step_id, step in data["steps"].items()}
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)

    @classmethod
    def from_yaml(
        cls, text: str, source: str = "workflow", base_dir: Path | None = None, *,
        check: Check | None = None,
    ) -> Workflow:
        """A workflow from YAML (or JSON) text, with every problem in one WorkflowInvalid.
        Only the model's own checks run unless `check` adds more: `podium.from_yaml` also
        imports the calls and prices the models, as loading a file does."""
        from podium.model import loader

        data = loader.read_text(text, source)
        return loader.parse_workflow(data, source, base_dir, check=check or _no_more_checks)


def _flat(step: dict[str, Any]) -> dict[str, Any]:
    """A canonical step (action apart, id repeated) as a hand-written one: keys side by side."""
    needs = {"needs": step["needs"]} if "needs" in step else {}
    policy = {k: v for k, v in step.items() if k not in ("id", "action", "needs")}
    return {**needs, **step["action"], **policy}


def _no_more_checks(data: Mapping[str, Any], found: Sequence[Any]) -> list[Any]:
    return []


def with_agent(raw: dict[str, Any], agents: dict[str, Any]) -> dict[str, Any]:
    """`raw` merged over the agent it names; already-expanded steps (with `action`) pass as is."""
    name = raw.get("agent")
    agent = agents.get(name) if isinstance(name, str) else None
    if not isinstance(agent, dict) or "action" in raw:
        return raw
    return {**agent, **raw}
