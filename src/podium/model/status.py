"""The statuses a run and a step can be in, as enums (their values are what is stored and shown).

Which moves between them are allowed is the engine's transition table (engine/transitions.py).
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    DEGRADED = "degraded"
    FAILED = "failed"
    COMPENSATED = "compensated"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    EXPIRED = "expired"


class StepStatus(StrEnum):
    PENDING = "pending"
    READY = "ready"  # its turn came, but a pause holds it back
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    COMPENSATED = "compensated"


RUN_FINAL = frozenset(RunStatus) - {RunStatus.QUEUED, RunStatus.RUNNING}
# A run that ended one of these ways goes to the dead-letter queue.
RUN_DEAD = frozenset(
    {RunStatus.FAILED, RunStatus.COMPENSATED, RunStatus.TIMED_OUT, RunStatus.EXPIRED}
)
STEP_OPEN = frozenset({StepStatus.PENDING, StepStatus.READY, StepStatus.RUNNING})
STEP_FINAL = frozenset(StepStatus) - STEP_OPEN
