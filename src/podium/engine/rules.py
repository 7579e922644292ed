"""Pure decisions of the run state machine: trigger rules, backoff, a run's final status.

No I/O and no clock: the engine and the property tests share these functions.
"""

from __future__ import annotations

import random
from enum import Enum

from podium.model.workflow import RetryPolicy

DONE = frozenset({"succeeded", "failed", "skipped", "cancelled", "compensated"})
CLEANUP_TRIGGERS = frozenset({"all_done", "one_failed"})
_READY_WHEN_ALL_SUCCEEDED = frozenset({"all_success", "all_done", "one_success", "none_failed"})


class Gate(Enum):
    READY = "ready"
    SKIP = "skip"  # the rule can no longer hold
    WAIT = "wait"


def trigger_gate(rule: str, upstream: list[str]) -> Gate:
    """Airflow's trigger rules over the statuses of a step's `needs` (hot path: a join of N
    steps is asked N times, so the counting happens in C, `list.count`)."""
    total = len(upstream)
    if total == 0:
        return Gate.READY
    ok = upstream.count("succeeded")
    if ok == total and rule in _READY_WHEN_ALL_SUCCEEDED:
        return Gate.READY
    failed = upstream.count("failed") + upstream.count("cancelled")
    skipped = upstream.count("skipped")
    all_done = ok + failed + skipped == total
    if rule == "all_success":
        if failed or skipped:
            return Gate.SKIP
        return Gate.READY if ok == total else Gate.WAIT
    if rule == "all_done":
        return Gate.READY if all_done else Gate.WAIT
    if rule == "one_success":
        return Gate.READY if ok else (Gate.SKIP if all_done else Gate.WAIT)
    if rule == "one_failed":
        return Gate.READY if failed else (Gate.SKIP if all_done else Gate.WAIT)
    if rule == "none_failed":
        return Gate.SKIP if failed else (Gate.READY if all_done else Gate.WAIT)
    raise ValueError(f"unknown trigger rule {rule!r}")


def backoff_s(policy: RetryPolicy, failed_attempt: int, rng: random.Random | None = None) -> float:
    """Delay before the attempt after `failed_attempt` (1-based): exponential, capped, jittered."""
    base = min(policy.backoff_s * policy.factor ** (failed_attempt - 1), policy.max_backoff_s)
    if not policy.jitter:
        return base
    spread = (rng or random).uniform(-policy.jitter, policy.jitter)
    return max(0.0, base * (1.0 + spread))


def final_status(
    stopping: str | None, *, degraded: bool, compensations_ran: int, compensations_failed: int
) -> str:
    """A finished run's status: its stop reason, else degraded or succeeded; a failed run whose
    compensations all ran is `compensated`."""
    if stopping in ("cancelled", "timed_out"):
        return stopping
    if stopping == "failed":
        ok = compensations_ran > 0 and compensations_failed == 0
        return "compensated" if ok else "failed"
    return "degraded" if degraded else "succeeded"
