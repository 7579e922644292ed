"""Checks of a raw workflow mapping that pydantic cannot make: needs, agents, expressions, trust.

Read from the raw data, so they run when pydantic fails too; cycles, calls, prices: podium.check.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from podium.model import expressions
from podium.model.policy import TrustPolicy
from podium.model.schema import schema_error
from podium.model.workflow import STEP_POLICY_KEYS, split_action, with_agent

# Action keys that hold no user expressions: the kind tag, an agent name, a child workflow's
# own definition (its templates are the child's, checked when the child is loaded), an llm
# answer's JSON Schema (data, never rendered); tools are checked as parts of their own (they
# render in their call's run, not the step's).
_NOT_EXPRESSIONS = frozenset({"kind", "definition", "agent", "output_schema", "tools"})


@dataclass(frozen=True)
class Problem:
    """One validation problem: where (`steps.draft.needs`, or "" for the whole file) and what."""

    location: str
    message: str

    def line(self, source: str) -> str:
        """`error: FILE: location: message`, on one line whatever the message held."""
        where = f"{self.location}: " if self.location else ""
        return f"error: {source}: {where}{' '.join(self.message.split())}"


@dataclass(frozen=True)
class Part:
    """A step's own action, its fallback or its compensation, merged with its agent."""

    prefix: str  # `steps.draft` or `steps.draft.fallback`
    raw: Mapping[str, Any]  # as written, to see the `agent` it names
    action: Mapping[str, Any]  # the action keys after the agent merge
    is_compensation: bool = False
    is_tool: bool = False  # a tool of an agent step: sees its call's arguments as `inputs`


def show(value: Any, limit: int = 80) -> str:
    """`repr(value)`, cut to `limit` characters so one huge value cannot flood the terminal."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def semantic_problems(data: Mapping[str, Any], policy: TrustPolicy | None = None) -> list[Problem]:
    """Every problem of `data` outside pydantic's reach, in step order; with a `policy`
    (an untrusted definition), also what that policy forbids."""
    agents = _mapping(data.get("agents"))
    # Agent keys count as the step's own, as they will once the model merges them.
    raw_steps = _raw_steps(data)
    steps = {step_id: with_agent(raw, agents) for step_id, raw in raw_steps.items()}
    needs = step_needs(data)
    upstream = _upstream(needs)
    problems = list(_needs_problems(needs))
    for step_id, merged in steps.items():
        problems += _policy_problems(step_id, merged, steps, upstream[step_id])
        for part in _parts(step_id, raw_steps[step_id], merged, agents):
            problems += _agent_problems(part, agents)
            if part.is_tool:
                problems += _tool_expression_problems(part)
            else:
                reads = upstream[step_id] | _self(part, step_id)
                problems += _expression_problems(part, steps, reads)
            if policy is not None:
                problems += _trust_problems(part, policy)
            problems += _llm_problems(part) + _loop_problems(part)
            if part.action.get("kind") == "sim":
                problems += _schema_problems(part)
    return problems + _input_default_problems(data)


def step_needs(data: Mapping[str, Any]) -> dict[str, list[str]]:
    """Step id -> the step ids it names in `needs` (its agent's included), for graph checks."""
    agents = _mapping(data.get("agents"))
    steps = _raw_steps(data)
    return {step_id: _needs_of(with_agent(raw, agents)) for step_id, raw in steps.items()}


def action_parts(data: Mapping[str, Any]) -> Iterator[Part]:
    """Every step's action, fallback and compensation, in step order, merged with its agent."""
    agents = _mapping(data.get("agents"))
    for step_id, raw in _raw_steps(data).items():
        yield from _parts(step_id, raw, with_agent(raw, agents), agents)


def input_type_problem(type_name: str, value: Any) -> str | None:
    """Why `value` is not of the declared input type, or None if it is."""
    accepts, what = _INPUT_TYPES.get(type_name, (lambda _: True, ""))
    return None if accepts(value) else f"should be {what} (got {show(value)})"


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    # bool is an int subclass, but `true` is not a number a user meant to pass
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value)


_INPUT_TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "string": (lambda v: isinstance(v, str), "a string"),
    "integer": (_is_integer, "an integer"),
    "number": (_is_number, "a number"),
    "boolean": (lambda v: isinstance(v, bool), "a boolean"),
    "object": (lambda v: isinstance(v, Mapping), "an object"),
    "array": (lambda v: isinstance(v, list | tuple), "an array"),
}


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def raw_steps_of(data: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Step id -> raw step, as written (not merged with its agent)."""
    return _raw_steps(data)


def _raw_steps(data: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Step id -> raw step; a step that is not a mapping (pydantic's to report) still exists."""
    steps = _mapping(data.get("steps"))
    return {str(k): v if isinstance(v, dict) else {} for k, v in steps.items()}


def _needs_of(raw: Mapping[str, Any]) -> list[str]:
    """The step ids a step names in `needs`; a malformed `needs` is pydantic's to report."""
    needs = raw.get("needs")
    if not isinstance(needs, list | tuple):
        return []
    return [n for n in needs if isinstance(n, str)]


def _needs_problems(needs: Mapping[str, list[str]]) -> Iterator[Problem]:
    for step_id, names in needs.items():
        for name in names:
            if name == step_id:
                yield Problem(f"steps.{step_id}.needs", f"a step cannot need itself (got {name!r})")
            elif name not in needs:
                yield Problem(f"steps.{step_id}.needs", f"names no step (got {name!r})")


def _upstream(needs: Mapping[str, list[str]]) -> dict[str, set[str]]:
    """Each step's transitive needs (steps that surely finished before it starts)."""
    found: dict[str, set[str]] = {}
    for step_id in needs:
        seen: set[str] = set()
        todo = [n for n in needs[step_id] if n in needs]
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo.extend(n for n in needs[name] if n in needs)
        found[step_id] = seen - {step_id}
    return found


def _self(part: Part, step_id: str) -> set[str]:
    # A compensation undoes a finished step, so it may read that step's own output.
    return {step_id} if part.is_compensation else set()


def _parts(
    step_id: str, raw: dict[str, Any], merged: dict[str, Any], agents: dict[str, Any]
) -> Iterator[Part]:
    prefix = f"steps.{step_id}"
    yield Part(prefix, raw, _mapping(split_action(merged).get("action")))
    for key in ("fallback", "compensate"):
        alternative = raw.get(key)
        if isinstance(alternative, dict):
            merged = with_agent(alternative, agents)
            yield Part(f"{prefix}.{key}", alternative, merged, key == "compensate")
    for name, tool in _mapping(_mapping(split_action(merged).get("action")).get("tools")).items():
        if isinstance(tool, dict):
            yield Part(f"{prefix}.tools.{name}", tool, _tool_action(tool), is_tool=True)


def _tool_action(tool: Mapping[str, Any]) -> dict[str, Any]:
    body = _mapping(tool.get("step")) or tool
    flat = {k: v for k, v in body.items() if k != "input_schema"}
    return _mapping(split_action(flat).get("action"))


def _tool_expression_problems(part: Part) -> list[Problem]:
    """A tool runs in its call's own run: it reads `inputs` (the model's arguments), `run`
    and `secrets`, never another step's output."""
    problems = []
    for key, value in part.action.items():
        if key in _NOT_EXPRESSIONS or key in STEP_POLICY_KEYS:
            continue
        location = f"{part.prefix}.{key}"
        problems += [Problem(location, message) for message in expressions.check(value)]
        for ref in sorted(expressions.step_refs(value)):
            message = (
                f"reads steps.{ref}, but a tool sees only its call's arguments (as inputs),"
                " run and secrets; pass the value in the step's prompt instead"
            )
            problems.append(Problem(location, message))
    return problems


def _loop_problems(part: Part) -> list[Problem]:
    if part.action.get("loop") is not None and not part.action.get("tools"):
        return [Problem(f"{part.prefix}.loop", "loop applies to a step with tools (got none)")]
    return []


def _policy_problems(
    step_id: str, merged: Mapping[str, Any], steps: Mapping[str, Any], upstream: set[str]
) -> list[Problem]:
    prefix = f"steps.{step_id}"
    problems = []
    for key in ("when", "for_each"):
        if key in merged:
            problems += _field_problems(f"{prefix}.{key}", merged[key], steps, upstream)
    parallel = merged.get("max_parallel")
    if parallel is not None and merged.get("for_each") is None:
        message = f"only applies to a step with for_each (got {show(parallel)})"
        problems.append(Problem(f"{prefix}.max_parallel", message))
    return problems


def _agent_problems(part: Part, agents: Mapping[str, Any]) -> list[Problem]:
    name = part.raw.get("agent")
    if name is None or (isinstance(name, str) and isinstance(agents.get(name), dict)):
        return []
    known = ", ".join(agents) or "none are defined"
    return [Problem(f"{part.prefix}.agent", f"unknown agent (got {show(name)}); agents: {known}")]


def _expression_problems(
    part: Part, steps: Mapping[str, Any], upstream: set[str]
) -> list[Problem]:
    problems = []
    for key, value in part.action.items():
        if key not in _NOT_EXPRESSIONS and key not in STEP_POLICY_KEYS:
            problems += _field_problems(f"{part.prefix}.{key}", value, steps, upstream)
    return problems


def _field_problems(
    location: str, value: Any, steps: Mapping[str, Any], upstream: set[str]
) -> list[Problem]:
    """Syntax and sandbox problems of the expressions in one field, and the steps they read."""
    problems = [Problem(location, message) for message in expressions.check(value)]
    for ref in sorted(expressions.step_refs(value)):
        if ref not in steps:
            problems.append(Problem(location, f"reads steps.{ref}, which names no step"))
        elif ref not in upstream:
            problems.append(
                Problem(location, f"reads steps.{ref}, which is not among its needs; add it there")
            )
    return problems


_URL_FIELDS = {"http": "url", "n8n": "webhook", "llm": "base_url"}
WORKFLOW_SUFFIXES = (".yaml", ".yml", ".json")


def _trust_problems(part: Part, policy: TrustPolicy) -> list[Problem]:
    """What an untrusted definition may not do: call modules outside python_modules, name
    workflow files or inline definitions, reach hosts outside egress, pick an API key."""
    action, kind = part.action, part.action.get("kind")
    problems: list[Problem] = []
    call = action.get("call")
    if kind == "python" and isinstance(call, str):
        problem = (
            "a templated call is not allowed for a definition from the API"
            if expressions.has_template(call)
            else policy.check_call(call)
        )
        if problem is not None:
            problems.append(Problem(f"{part.prefix}.call", problem))
    if kind == "workflow":
        problems += _workflow_trust_problems(part)
    url_field = _URL_FIELDS.get(str(kind))
    url = action.get(url_field) if url_field else None
    if isinstance(url, str) and not expressions.has_template(url):
        problem = policy.egress.check_url(url)
        if problem is not None:
            problems.append(Problem(f"{part.prefix}.{url_field}", problem))
    if kind in ("llm", "sim") and isinstance(action.get("output_schema"), str):
        message = "a schema file is not allowed for a definition from the API; inline the schema"
        problems.append(Problem(f"{part.prefix}.output_schema", message))
    if kind == "llm" and action.get("api_key_env") is not None:
        message = (
            "api_key_env is not allowed for a definition from the API;"
            " the provider's default key (from [secrets]) is used"
        )
        problems.append(Problem(f"{part.prefix}.api_key_env", message))
    return problems


def _workflow_trust_problems(part: Part) -> list[Problem]:
    target = part.action.get("workflow")
    problems = []
    if isinstance(target, str) and (
        target.lower().endswith(WORKFLOW_SUFFIXES) or "/" in target or "\\" in target
    ):
        message = f"only registered workflow names may be used, not files (got {show(target)})"
        problems.append(Problem(f"{part.prefix}.workflow", message))
    if part.action.get("definition") is not None:
        message = "an inline definition is not allowed for a definition from the API"
        problems.append(Problem(f"{part.prefix}.definition", message))
    return problems


def _llm_problems(part: Part) -> list[Problem]:
    """What the message and model of an `llm` step need (its price is podium.check's)."""
    action = part.action
    if action.get("kind") != "llm":
        return []
    given = [key for key in ("prompt", "messages") if action.get(key) is not None]
    problems = []
    if len(given) == 2:
        problems.append(Problem(f"{part.prefix}.prompt", "give prompt or messages, not both"))
    elif not given and not action.get("input"):
        message = "an llm step needs prompt, messages or input (got none of them)"
        problems.append(Problem(f"{part.prefix}.prompt", message))
    elif given == ["messages"] and action.get("input"):
        message = "input goes with prompt, not messages; put it into a message"
        problems.append(Problem(f"{part.prefix}.input", message))
    return problems + _llm_model_problems(part) + _schema_problems(part)


def _schema_problems(part: Part) -> list[Problem]:
    """An `output_schema` must be a usable JSON Schema (a file's is read in by now)."""
    schema = part.action.get("output_schema")
    where = f"{part.prefix}.output_schema"
    if schema is None:
        return []
    if isinstance(schema, str):
        if schema.lower().endswith(WORKFLOW_SUFFIXES):
            return []  # a schema file: the loader read it in, or said why it could not
        message = (
            "give a JSON Schema, or the path of a .json/.yaml schema file"
            f" (got {show(schema)}; a `module:Class` model is for the Python SDK)"
        )
        return [Problem(where, message)]
    problems = []
    problem = schema_error(schema)
    if problem is not None:
        problems.append(Problem(where, problem))
    if part.action.get("json_output"):
        problems.append(Problem(where, "output_schema parses the answer already; drop json_output"))
    return problems


def _llm_model_problems(part: Part) -> list[Problem]:
    if part.action.get("model") is None and part.action.get("tier") is None:
        message = "an llm step needs model or tier (got neither)"
        return [Problem(f"{part.prefix}.model", message)]
    return []


def _input_default_problems(data: Mapping[str, Any]) -> list[Problem]:
    problems = []
    for name, spec in _mapping(data.get("inputs")).items():
        if not isinstance(spec, dict) or spec.get("default") is None:
            continue
        problem = input_type_problem(str(spec.get("type", "string")), spec["default"])
        if problem is not None:
            problems.append(Problem(f"inputs.{name}.default", problem))
    return problems
