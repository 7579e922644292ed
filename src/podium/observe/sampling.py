"""Which runs are traced: the standard `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`.

The decision is made once per run, on its trace id, as the SDK's TraceIdRatioBased sampler
makes it (the trace id's low 64 bits under rate × 2^64). Trace ids are derived from the run id
(or come from the run's parent), so every worker, and the engine that recovers the run after a
crash, decides the same way without asking another.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from podium.errors import PodiumError

_NAMES = (
    "always_on", "always_off", "traceidratio",
    "parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio",
)
_LOW_64 = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class Sampler:
    """`rate` of the runs (1: all, 0: none) are traced; `parent_based`: a run started under a
    span follows that span's sampled flag instead."""

    rate: float = 1.0
    parent_based: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Sampler:
        """The sampler `OTEL_TRACES_SAMPLER` names (default `parentbased_always_on`)."""
        env = os.environ if environ is None else environ
        name = (env.get("OTEL_TRACES_SAMPLER") or "parentbased_always_on").strip().lower()
        if name not in _NAMES:
            raise PodiumError(
                f"OTEL_TRACES_SAMPLER names {name!r}; podium knows {', '.join(_NAMES)}"
            )
        parent_based = name.startswith("parentbased_")
        root = name.removeprefix("parentbased_")
        if root != "traceidratio":
            return cls(1.0 if root == "always_on" else 0.0, parent_based)
        arg = (env.get("OTEL_TRACES_SAMPLER_ARG") or "1.0").strip()
        try:
            rate = float(arg)
        except ValueError:
            rate = -1.0
        if not 0.0 <= rate <= 1.0:
            raise PodiumError(f"OTEL_TRACES_SAMPLER_ARG is {arg!r}; expected a number from 0 to 1")
        return cls(rate, parent_based)

    def sampled(self, trace_id: int, parent_sampled: bool | None) -> bool:
        """Is a run of this trace traced? `parent_sampled`: the flag of the span it was
        started under (None: it was started under none)."""
        if self.parent_based and parent_sampled is not None:
            return parent_sampled
        return trace_id & _LOW_64 < round(self.rate * (_LOW_64 + 1))
