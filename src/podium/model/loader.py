"""Loads a workflow from YAML/JSON and validates it, reporting every problem in one error.

Each problem is one line, `error: FILE: steps.<id>.<field>: what is wrong (got VALUE)`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from podium.errors import WorkflowInvalid
from podium.model.messages import pydantic_problems
from podium.model.policy import TrustPolicy
from podium.model.validate import WORKFLOW_SUFFIXES, Problem, semantic_problems, show
from podium.model.workflow import Workflow, with_agent

MAX_DOCUMENT_BYTES = 10 * 1024 * 1024
MAX_SCHEMA_BYTES = 1024 * 1024  # an output_schema file
MAX_DEPTH = 64  # nesting of mappings and lists; a real workflow uses a dozen
MAX_ALIASES = 100  # YAML alias uses per document: enough for shared agents, not for a bomb
MAX_NODES = 1_000_000  # values in a YAML document once its aliases are expanded
_MIB = 1024 * 1024

# Whole-workflow checks from above this layer (podium.check's, so they are never forgotten by
# default): the raw data and the problems found so far in, more problems out. Each file of a
# workflow (sub-workflow files too) goes through it.
Check = Callable[[Mapping[str, Any], Sequence[Problem]], list[Problem]]


def load_workflow(path: str | Path, *, check: Check) -> Workflow:
    """Reads and validates a `.yaml`/`.yml`/`.json` workflow; raises WorkflowInvalid."""
    return _load(Path(path), check, ())


def parse_workflow(
    data: Any,
    source: str = "workflow",
    base_dir: Path | None = None,
    *,
    check: Check,
    policy: TrustPolicy | None = None,
) -> Workflow:
    """Validates already-parsed data; `source` names it in messages, `base_dir` anchors
    sub-workflow files. `policy` judges an untrusted definition (None: trusted, as a local
    file is). Raises one WorkflowInvalid holding every problem found."""
    return _parse(data, source, base_dir, check, (), policy)


def read_document(path: Path, what: str, max_bytes: int = MAX_DOCUMENT_BYTES) -> Any:
    """The parsed content of a JSON (`.json`) or YAML file, refusing files over `max_bytes`."""
    try:
        with path.open("rb") as file:
            # Read one byte past the limit rather than trust the size: the file may still grow.
            raw = file.read(max_bytes + 1)
            if len(raw) > max_bytes:
                size = max(path.stat().st_size, len(raw))
                raise WorkflowInvalid([
                    f"error: {path}: the file is {size / _MIB:.1f} MiB, over the"
                    f" {max_bytes / _MIB:g} MiB limit for {what}"
                ])
        content = raw.decode("utf-8")
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise WorkflowInvalid([f"error: {path}: cannot read {what}: {reason}"]) from None
    except UnicodeDecodeError as exc:
        raise WorkflowInvalid([f"error: {path}: not UTF-8 text ({exc.reason})"]) from None
    if path.suffix.lower() == ".json":
        return _parse_json(content, path)
    return _parse_yaml(content, path)


def read_text(text: str, source: str, max_bytes: int = MAX_DOCUMENT_BYTES) -> Any:
    """The parsed content of YAML (or JSON, which YAML reads too) given as text, with the
    limits of `read_document`; `source` names it in messages."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise WorkflowInvalid([
            f"error: {source}: the text is {size / _MIB:.1f} MiB, over the"
            f" {max_bytes / _MIB:g} MiB limit for a workflow definition"
        ])
    return _parse_yaml(text, source)


def check_depth(value: Any, max_depth: int) -> str | None:
    """Why `value` nests mappings and lists deeper than `max_depth`, or None. Iterative, so
    a hostile document cannot exhaust the stack here."""
    todo: list[tuple[Any, int]] = [(value, 1)]
    seen: set[int] = set()  # YAML aliases share objects: visit each container once
    while todo:
        item, depth = todo.pop()
        if not isinstance(item, dict | list) or id(item) in seen:
            continue
        if depth > max_depth:
            return f"nests mappings and lists deeper than {max_depth} levels"
        seen.add(id(item))
        children = item.values() if isinstance(item, dict) else item
        todo.extend((child, depth + 1) for child in children)
    return None


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load, except that a key written twice is an error instead of a silent overwrite,
    and a document may use at most MAX_ALIASES aliases and nest MAX_DEPTH levels (counting
    what an alias brings in): a 500-byte "billion laughs" otherwise expands to gigabytes."""

    _aliases = 0
    _depth = 0

    def compose_document(self) -> yaml.Node | None:
        self._aliases, self._depth = 0, 0
        start = self.peek_event()  # type: ignore[no-untyped-call]
        node: yaml.Node | None = super().compose_document()
        # Few aliases can still multiply: nine lists of nine aliases each expand to 9**9 values.
        if node is not None and (size := _measure(node)[1]) > MAX_NODES:
            message = f"expands to {size} values through its aliases, over the limit of {MAX_NODES}"
            raise _composer_error(message, start)
        return node

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _composer_error(f"more than {MAX_ALIASES} aliases in one document", event)
            node: yaml.Node | None = super().compose_node(parent, index)
            if node is not None and self._depth + _measure(node)[0] > MAX_DEPTH:
                raise _composer_error(_too_deep(), event)
            return node
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _composer_error(_too_deep(), event)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            if key_node.value in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key_node.value!r}", key_node.start_mark
                )
            seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


def _too_deep() -> str:
    return f"nests mappings and lists deeper than {MAX_DEPTH} levels"


def _composer_error(message: str, event: yaml.Event) -> yaml.composer.ComposerError:
    mark = event.start_mark if isinstance(event.start_mark, yaml.Mark) else None
    return yaml.composer.ComposerError(None, None, message, mark)


def _measure(node: yaml.Node) -> tuple[int, int]:
    """(levels, values) of `node` with its aliases expanded; iterative, each shared node once."""
    measured: dict[int, tuple[int, int]] = {}
    todo: list[tuple[yaml.Node, bool]] = [(node, False)]
    while todo:
        current, expanded = todo.pop()
        children = _children(current)
        if expanded:
            parts = [measured[id(c)] for c in children]
            height = 1 + max((h for h, _ in parts), default=0)
            measured[id(current)] = (height, 1 + sum(n for _, n in parts))
        elif id(current) not in measured:
            todo.append((current, True))
            todo.extend((c, False) for c in children if id(c) not in measured)
    return measured[id(node)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _parse_yaml(content: str, path: Path | str) -> Any:
    try:
        return yaml.load(content, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: safe
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = exc.problem or "cannot parse"
        context = f" ({exc.context})" if exc.context else ""
        raise WorkflowInvalid([f"error: {path}: {where}invalid YAML: {what}{context}"]) from None
    except yaml.YAMLError as exc:
        message = " ".join(str(exc).split())
        raise WorkflowInvalid([f"error: {path}: invalid YAML: {message}"]) from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _parse_json(content: str, path: Path) -> Any:
    try:
        data = json.loads(content, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise WorkflowInvalid([f"error: {path}: invalid JSON: {_too_deep()}"]) from None
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise WorkflowInvalid([f"error: {path}: {where}: invalid JSON: {exc.msg}"]) from None
    except ValueError as exc:
        raise WorkflowInvalid([f"error: {path}: invalid JSON: {exc}"]) from None
    problem = check_depth(data, MAX_DEPTH)
    if problem is not None:
        raise WorkflowInvalid([f"error: {path}: invalid JSON: {problem}"])
    return data


def _load(path: Path, check: Check, chain: tuple[Path, ...]) -> Workflow:
    data = read_document(path, "a workflow definition")
    return _parse(data, str(path), path.parent, check, (*chain, path.resolve()))


def _parse(
    data: Any,
    source: str,
    base_dir: Path | None,
    check: Check,
    chain: tuple[Path, ...],
    policy: TrustPolicy | None = None,
) -> Workflow:
    if not isinstance(data, dict):
        raise WorkflowInvalid([Problem("", _not_a_mapping(data)).line(source)])
    too_deep = check_depth(data, MAX_DEPTH)
    if too_deep is not None:  # data from the API did not come through the YAML/JSON readers
        raise WorkflowInvalid([Problem("", too_deep).line(source)])
    problems: list[Problem] = []
    if policy is None:  # an untrusted definition never reads files: its problems say so
        data, problems = _include_children(data, base_dir or Path(), check, chain)
    problems += semantic_problems(data, policy)
    problems += check(data, problems)
    try:
        workflow = Workflow.model_validate(data)
    except ValidationError as exc:
        problems = _without_follow_ons(pydantic_problems(exc), problems) + problems
    if problems:
        raise WorkflowInvalid(list(dict.fromkeys(p.line(source) for p in problems)))
    return workflow


def _without_follow_ons(found: list[Problem], semantic: list[Problem]) -> list[Problem]:
    """Drops pydantic's "missing kind" of a step whose unknown agent was to set it: one line
    per problem, and the agent is the problem."""
    bad_agents = {p.location for p in semantic if p.location.endswith(".agent")}
    return [
        p for p in found
        if not (p.location.endswith(".kind") and p.location[: -len("kind")] + "agent" in bad_agents)
    ]


def _not_a_mapping(data: Any) -> str:
    if data is None:
        return "the file is empty; a workflow needs at least name and steps"
    kind = type(data).__name__
    return f"a workflow must be a mapping with name and steps, not a {kind} (got {show(data)})"


# -- sub-workflow files ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Includes:
    """Where sub-workflow files are found, and the files being loaded (to refuse a loop)."""

    base_dir: Path
    check: Check
    chain: tuple[Path, ...]


def _include_children(
    data: dict[str, Any], base_dir: Path, check: Check, chain: tuple[Path, ...]
) -> tuple[dict[str, Any], list[Problem]]:
    """`data` with each `workflow` step that names a file given that file's `definition`.

    The raw data is copied, never changed in place: parsing stays pure.
    """
    steps = data.get("steps")
    if not isinstance(steps, dict):
        return data, []
    agents: dict[str, Any] = data["agents"] if isinstance(data.get("agents"), dict) else {}
    includes = _Includes(base_dir, check, chain)
    problems: list[Problem] = []
    included: dict[Any, Any] = {}
    for step_id, raw in steps.items():
        if isinstance(raw, dict):
            raw = _include_in_step(f"steps.{step_id}", raw, agents, includes, problems)
        included[step_id] = raw
    return {**data, "steps": included}, problems


def _include_in_step(
    prefix: str, raw: dict[str, Any], agents: dict[str, Any], includes: _Includes,
    problems: list[Problem],
) -> dict[str, Any]:
    nested = isinstance(raw.get("action"), dict)  # the canonical form keeps the action apart
    action = raw["action"] if nested else with_agent(raw, agents)
    found = _file_fields(prefix, action, includes, problems)
    if found and nested:
        raw = {**raw, "action": {**raw["action"], **found}}
    elif found:
        raw = {**raw, **found}
    for key in ("fallback", "compensate"):
        alternative = raw.get(key)
        if isinstance(alternative, dict):
            merged = with_agent(alternative, agents)
            found = _file_fields(f"{prefix}.{key}", merged, includes, problems)
            if found:
                raw = {**raw, key: {**alternative, **found}}
    return raw


def _file_fields(
    prefix: str, action: Mapping[str, Any], includes: _Includes, problems: list[Problem]
) -> dict[str, Any]:
    """The action's fields that name a file, read: a child workflow's `definition`, an llm
    step's `output_schema`."""
    found: dict[str, Any] = {}
    definition = _child_definition(prefix, action, includes, problems)
    if definition is not None:
        found["definition"] = definition
    schema = _schema_file(prefix, action, includes, problems)
    if schema is not None:
        found["output_schema"] = schema
    return found


def _schema_file(
    prefix: str, action: Mapping[str, Any], includes: _Includes, problems: list[Problem]
) -> Any:
    """The JSON Schema in the file an llm (or sim) action's `output_schema` names (relative to the
    workflow file), or None (problems appended)."""
    target = action.get("output_schema")
    if action.get("kind") not in ("llm", "sim") or not isinstance(target, str):
        return None
    if not target.lower().endswith(WORKFLOW_SUFFIXES):
        return None  # not a file: validation says what it should be
    try:
        return read_document(includes.base_dir / target, "a JSON Schema", MAX_SCHEMA_BYTES)
    except WorkflowInvalid as exc:
        for line in exc.problems:
            problems.append(Problem(f"{prefix}.output_schema", line.removeprefix("error: ")))
        return None


def _child_definition(
    prefix: str, action: Mapping[str, Any], includes: _Includes, problems: list[Problem]
) -> dict[str, Any] | None:
    """The canonical JSON of the file a `workflow` action names, or None (problems appended)."""
    target = action.get("workflow")
    if action.get("kind") != "workflow" or not isinstance(target, str):
        return None
    if not target.lower().endswith(WORKFLOW_SUFFIXES) or isinstance(action.get("definition"), dict):
        return None  # a registered name, or a definition already inlined (canonical JSON)
    path = includes.base_dir / target
    if path.resolve() in includes.chain:
        loop = " -> ".join([*(p.name for p in includes.chain), path.name])
        problems.append(Problem(f"{prefix}.workflow", f"workflow files include each other: {loop}"))
        return None
    try:
        return _load(path, includes.check, includes.chain).to_json()
    except WorkflowInvalid as exc:
        for line in exc.problems:
            problems.append(Problem(f"{prefix}.workflow", line.removeprefix("error: ")))
        return None
