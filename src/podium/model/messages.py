"""pydantic's validation errors in the user's words: their keys, their locations, one line each.

`steps.draft.action.http.url` becomes `steps.draft.url`; "Field required", "missing required field".
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from itertools import pairwise

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from podium.model.validate import Problem, show
from podium.model.workflow import (
    STEP_KINDS,
    STEP_POLICY_KEYS,
    Budget,
    HttpAction,
    InputSpec,
    LatencyDist,
    PythonAction,
    Resources,
    RetryPolicy,
    SimAction,
    TokenCounts,
    WaitAction,
    Workflow,
    WorkflowAction,
)

_Loc = tuple[int | str, ...]  # a pydantic error location, as the user wrote the keys

_ACTIONS: dict[str, type[BaseModel]] = {
    "python": PythonAction, "http": HttpAction, "sim": SimAction, "wait": WaitAction,
    "workflow": WorkflowAction,
}
# The model behind a nested key, to suggest the key a typo meant.
_NESTED: dict[str, type[BaseModel]] = {
    "retry": RetryPolicy, "resources": Resources, "budget": Budget, "latency": LatencyDist,
    "tokens": TokenCounts,
}
# Keys whose children are names the user chose (step ids, input names, header names).
_USER_KEYS = frozenset({"steps", "inputs", "agents", "headers"})
_TAGGED = ("action", "fallback", "compensate")  # pydantic adds the kind tag after these
# pydantic names union members in locations (`float`, `list[any]`); they mean nothing to users.
_UNION_MEMBERS = frozenset({"str", "int", "float", "bool", "none", "list", "dict", "tuple"})
_PATTERN_HINTS = {
    "name": "should use only lowercase letters, digits, '-', '_' and '.'",
    "id": "a step id uses letters, digits, '_', '-' and '.', and starts with a letter or digit",
    "call": "should be module:function, e.g. mypkg.tasks:enrich",
}
_MESSAGE_REWRITES = (
    ("Value error, ", ""),
    ("Input should be", "should be"),
    ("a valid tuple", "a list"),
    ("String should", "should"),
    ("Dictionary should", "should"),
)


def pydantic_problems(exc: ValidationError) -> list[Problem]:
    """pydantic's errors in the user's words: their locations, one problem per location."""
    by_location: dict[_Loc, list[str]] = {}
    for error in exc.errors():
        location, message = _rewrite(error)
        by_location.setdefault(location, [])
        if message not in by_location[location]:
            by_location[location].append(message)
    shadowed = _ancestors(by_location)
    return [
        Problem(_location(loc), _join_alternatives(msgs)) for loc, msgs in by_location.items()
        if loc not in shadowed
    ]


def _ancestors(locations: Iterable[_Loc]) -> set[_Loc]:
    """Locations with a problem reported under them, which then says it better.

    `latency: {p50: x}` fails as a duration at `latency` (one union member) and at
    `latency.p50` (the other): only the second is what the user meant.
    """
    return {loc[:i] for loc in locations for i in range(1, len(loc))}


def _join_alternatives(messages: list[str]) -> str:
    """One message for the members of a union: `should be a valid string or a valid boolean`."""
    split = [message.partition(" (got ") for message in messages]
    same_value = len({got for _, _, got in split}) == 1
    all_wants = all(want.startswith("should be ") for want, _, _ in split)
    if len(split) == 1 or not same_value or not all_wants:
        return messages[0]
    wants = " or ".join(want.removeprefix("should be ") for want, _, _ in split)
    return f"should be {wants} (got {split[0][2]}"


def _rewrite(error: ErrorDetails) -> tuple[_Loc, str]:
    parts = _user_parts(error["loc"])
    kind = error["type"]
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return (*parts, "kind"), _kind_message(error)
    if kind == "extra_forbidden":
        return tuple(parts), _unknown_key_message(error["loc"], parts)
    if kind == "missing":
        return tuple(parts), "missing required field"
    if len(parts) == 3 and parts[0] == "steps" and parts[2] == "id":
        parts = parts[:2]  # a bad step id is reported on the step itself
    # Some validators quote the value themselves, uncut: quote it once, cut to size.
    message = _message(error).partition(" (got ")[0]
    return tuple(parts), f"{message} (got {show(error['input'])})"


def _user_parts(loc: Sequence[int | str]) -> list[int | str]:
    """The location without pydantic's internals: `action`, the kind tag, union members."""
    parts: list[int | str] = []
    previous: int | str | None = None
    for part in loc:
        # A name the user chose (step id, input name, header) is kept whatever it looks like.
        chosen = previous in _USER_KEYS and (len(parts) < 2 or parts[-2] not in _USER_KEYS)
        if isinstance(part, int) or chosen or not _is_internal(part, previous):
            parts.append(part)
        previous = part
    return parts


def _is_internal(part: str, previous: int | str | None) -> bool:
    # A step's `action` is the model's; a budget's `action` (block | throttle) is the user's.
    if (part == "action" and previous != "budget") or (
        part in STEP_KINDS and previous in _TAGGED
    ):
        return True
    return "[" in part or part in _UNION_MEMBERS or part[:1].isupper()


def _location(parts: Sequence[int | str]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _message(error: ErrorDetails) -> str:
    field = error["loc"][-1] if error["loc"] else ""
    if error["type"] == "string_pattern_mismatch" and field in _PATTERN_HINTS:
        return _PATTERN_HINTS[str(field)]
    message = error["msg"]
    for old, new in _MESSAGE_REWRITES:
        message = message.replace(old, new)
    # "a valid dictionary or instance of Budget": the class name means nothing in YAML
    return message.split(" or instance of ")[0].split(" or object to extract")[0]


def _kind_message(error: ErrorDetails) -> str:
    if error["type"] == "union_tag_not_found":
        return "missing kind (or an agent that sets it)"
    tag = (error.get("ctx") or {}).get("tag")
    return f"unknown kind (got {show(tag)}); expected one of {', '.join(STEP_KINDS)}"


def _unknown_key_message(loc: Sequence[int | str], parts: Sequence[int | str]) -> str:
    # A key that looks like one of pydantic's internals leaves no user part: name it anyway.
    key = str(parts[-1] if parts else loc[-1] if loc else "")
    known = _known_keys(loc, parts)
    close = difflib.get_close_matches(key, sorted(known), n=1)
    return f"unknown key; did you mean {close[0]!r}?" if close else "unknown key"


def _known_keys(loc: Sequence[int | str], parts: Sequence[int | str]) -> set[str]:
    """The keys allowed where an unknown key was found (empty when unsure)."""
    tags = (str(after) for part, after in pairwise(loc) if part in _TAGGED and after in _ACTIONS)
    kind = next(tags, None)
    parent = parts[-2] if len(parts) >= 2 else None
    if not parts:
        return set()
    if len(parts) == 1:
        return _keys(Workflow)
    if parts[0] == "inputs" and len(parts) == 3:
        return _keys(InputSpec)
    if isinstance(parent, str) and parent in _NESTED:
        return _keys(_NESTED[parent])
    if kind is not None and parts[0] == "steps" and len(parts) == 3:
        return _keys(_ACTIONS[kind]) | set(STEP_POLICY_KEYS)
    if kind is not None and len(parts) == 4 and parent in ("fallback", "compensate"):
        return _keys(_ACTIONS[kind])
    return set()


def _keys(model: type[BaseModel]) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}
