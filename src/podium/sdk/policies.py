"""The typed policies of a step and a workflow (retry, circuit, limits, resources, budget, input).

Each mirrors its model and YAML mapping; only what is given is written, the rest stays default.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal, TypedDict

from podium.sdk.refs import Ref, raw

# "250ms", "2s", "5m", "1h", "1d", or a number of seconds.
Duration = str | float
TriggerRule = Literal["all_success", "all_done", "one_success", "one_failed", "none_failed"]
Priority = Literal["critical", "high", "normal", "low"]
InputType = Literal["string", "integer", "number", "boolean", "object", "array"]


@dataclass(frozen=True, kw_only=True)
class _Policy:
    """Writes the fields that were given, under their YAML names."""

    def to_raw(self) -> dict[str, Any]:
        return {f.name: raw(getattr(self, f.name)) for f in fields(self)
                if getattr(self, f.name) is not None}


@dataclass(frozen=True, kw_only=True)
class RetryPolicy(_Policy):
    """Exponential backoff with jitter; `attempts` counts every attempt, the first included
    (default 3, backoff 1s, factor 2, max_backoff 30s, jitter 0.2)."""

    attempts: int | None = None
    backoff: Duration | None = None
    factor: float | None = None
    max_backoff: Duration | None = None
    jitter: float | None = None


@dataclass(frozen=True, kw_only=True)
class Circuit(_Policy):
    """Opens after `failures` consecutive failed attempts (5), half-open after `cooldown`
    (30s), closed after `successes` trial calls (1), `half_open_max` at once (1)."""

    failures: int | None = None
    cooldown: Duration | None = None
    successes: int | None = None
    half_open_max: int | None = None


@dataclass(frozen=True, kw_only=True)
class Limits(_Policy):
    """Rate and concurrency limits shared by every engine; `key` (an expression) gives one
    bucket per value, e.g. `key=customer` for a workflow input `customer`."""

    rpm: float | None = None
    tpm: float | None = None
    max_concurrent: int | None = None
    key: str | Ref | None = None


@dataclass(frozen=True, kw_only=True)
class Resources(_Policy):
    """What one instance of the step holds while it runs: cpu, memory ("256Mi"), api_calls."""

    cpu: float | None = None
    memory: str | float | None = None
    api_calls: int | None = None


@dataclass(frozen=True, kw_only=True)
class Budget(_Policy):
    """The run's own spend limit in USD; `warn_at` is the fraction that warns (0.8)."""

    usd: float | None = None
    warn_at: float | None = None
    action: Literal["block", "throttle"] | None = None


@dataclass(frozen=True, kw_only=True)
class Input:
    """How a workflow input is declared, for `Annotated[str, Input(description=...)]`; `type`
    overrides the one read from the annotation, `required` the one read from the default."""

    description: str | None = None
    type: InputType | None = None
    required: bool | None = None


class StepOptions(TypedDict, total=False):
    """A step's scheduling policy, as keyword arguments (YAML's step keys, same meaning)."""

    needs: Sequence[Any]  # steps (their handles) this one runs after, without reading them
    trigger: TriggerRule
    when: Any  # a reference or an expression; false skips the step
    optional: bool
    retry: RetryPolicy
    timeout: Duration
    estimate: Duration
    resources: Resources
    for_each: Any  # a reference to a list, or a list: one instance per item (`item`, `index`)
    max_parallel: int
    fallback: Any  # an Action (sdk.sim(...), a step function's .bind(...))
    compensate: Any  # an Action run to undo this step when a later one fails
    agent: Any  # an Agent (sdk.agent(...)) whose configuration this step starts from
    description: str
    circuit: Circuit
    limits: Limits
