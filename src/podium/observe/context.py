"""W3C trace context for runs: parsing a `traceparent`, and the ids a run's spans get.

Ids are deterministic (see observe/tracing.py): any process computes an attempt's span id.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
_SAMPLED = 0x01


# -- trace context ------------------------------------------------------------------------------


def parse_traceparent(value: str | None) -> str | None:
    """A valid W3C traceparent, normalised (lower case, version 00); None for anything else
    (an invalid header is ignored, as the W3C recommendation says)."""
    if not value or len(value) > 512:
        return None
    match = _TRACEPARENT.match(value.strip().lower())
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or set(trace_id) == {"0"} or set(
        span_id
    ) == {"0"}:
        return None
    return f"00-{trace_id}-{span_id}-{flags}"


def current_traceparent(environ: Mapping[str, str] | None = None) -> str | None:
    """The span this process runs under: the active OpenTelemetry span, else `TRACEPARENT`."""
    from opentelemetry import trace as trace_api  # only commands that start a run pay for it

    span = trace_api.get_current_span().get_span_context()
    if span.is_valid:
        return f"00-{span.trace_id:032x}-{span.span_id:016x}-{int(span.trace_flags):02x}"
    return parse_traceparent((os.environ if environ is None else environ).get("TRACEPARENT"))


def derived_id(text: str, bits: int) -> int:
    value = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=bits // 8).digest(), "big")
    return value or 1  # an all-zero id is invalid


@dataclass(frozen=True, slots=True)
class RunTrace:
    """Where a run's spans go: its trace, its root span, and the span it hangs under."""

    trace_id: int
    root_span_id: int
    parent_span_id: int | None  # the span it was started under, if any
    sampled: bool

    @classmethod
    def of(cls, run_id: str, trace_parent: str | None) -> RunTrace:
        root = derived_id(f"root\x1f{run_id}", 64)
        parent = parse_traceparent(trace_parent)
        if parent is None:  # as steps/http.py derives it while tracing is off
            return cls(int(hashlib.sha256(run_id.encode()).hexdigest()[:32], 16), root, None, True)
        sampled = int(parent[53:55], 16) & 1 == 1
        return cls(int(parent[3:35], 16), root, int(parent[36:52], 16), sampled)

    @property
    def flags(self) -> int:
        return _SAMPLED if self.sampled else 0


@functools.lru_cache(maxsize=4096)  # asked when the attempt starts, and again when it ends
def attempt_span_id(run_id: str, step_id: str, index: int, attempt: int, role: str = "") -> int:
    """The span id of one attempt (`role`: "" the step's action, "fallback", "compensate")."""
    return derived_id(f"attempt\x1f{run_id}\x1f{step_id}\x1f{index}\x1f{attempt}\x1f{role}", 64)


def traceparent_of(trace: RunTrace, span_id: int) -> str:
    return f"00-{trace.trace_id:032x}-{span_id:016x}-{trace.flags:02x}"


