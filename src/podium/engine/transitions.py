"""The one table of allowed status changes, and the one function that makes every change.

A move the table does not allow is a bug in the engine, never a user error: it raises at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from podium.model.status import RUN_DEAD, RunStatus, StepStatus
from podium.store.records import RunState, StepState

R, S = RunStatus, StepStatus

RUN_EDGES: frozenset[tuple[RunStatus, RunStatus]] = frozenset(
    {
        (R.QUEUED, R.RUNNING),  # admitted
        (R.QUEUED, R.CANCELLED),
        (R.QUEUED, R.EXPIRED),  # waited past its priority's queue TTL
        (R.QUEUED, R.FAILED),  # cannot be run at all (a poison dispatch)
        *((R.RUNNING, end) for end in RunStatus if end not in (R.QUEUED, R.RUNNING, R.EXPIRED)),
        *((dead, R.QUEUED) for dead in RUN_DEAD),  # replayed from the dead-letter queue
    }
)

STEP_EDGES: frozenset[tuple[StepStatus, StepStatus]] = frozenset(
    {
        (S.PENDING, S.RUNNING),
        (S.PENDING, S.READY),  # its turn came while a pause holds it
        (S.PENDING, S.SKIPPED),  # its trigger rule or `when` can no longer hold
        (S.PENDING, S.FAILED),  # a bad `when` or `for_each`: failed before any attempt
        (S.READY, S.RUNNING),  # the pause ended
        (S.READY, S.PENDING),  # a held `for_each` instance goes back to be refilled
        (S.READY, S.CANCELLED),
        (S.RUNNING, S.RUNNING),  # started again after a crash (its attempt was lost)
        (S.RUNNING, S.PENDING),  # an interrupted `for_each` instance, refilled on recovery
        (S.RUNNING, S.READY),  # interrupted, and a pause holds it on recovery
        (S.RUNNING, S.SUCCEEDED),
        (S.RUNNING, S.FAILED),
        (S.RUNNING, S.CANCELLED),
        (S.SUCCEEDED, S.COMPENSATED),  # undone by its saga compensation
    }
)


# The same edges as plain strings: a move checks the row's stored status without building an
# enum member (this runs twice per step attempt).
_RUN_MOVES = frozenset((a.value, b.value) for a, b in RUN_EDGES)
_STEP_MOVES = frozenset((a.value, b.value) for a, b in STEP_EDGES)


class IllegalTransition(RuntimeError):
    """The engine tried a status change the table does not allow (a bug in podium)."""


@dataclass(slots=True)  # not frozen: a frozen dataclass is slower to build, twice a step
class Transition:
    """One committed status change of a run (`step_id` None) or of a step."""

    run_id: str
    step_id: str | None
    index: int
    source: str
    target: str
    at: float


def move_run(row: RunState, target: RunStatus, at: float) -> Transition:
    source, value = row.status, target._value_
    if (source, value) not in _RUN_MOVES:
        raise IllegalTransition(f"run {row.run_id}: {source} -> {value}")
    row.status = value
    return Transition(row.run_id, None, -1, source, value, at)


def move_step(st: StepState, target: StepStatus, at: float) -> Transition:
    source, value = st.status, target._value_
    if (source, value) not in _STEP_MOVES:
        label = st.step_id if st.index < 0 else f"{st.step_id}[{st.index}]"
        raise IllegalTransition(f"step {label} of run {st.run_id}: {source} -> {value}")
    st.status = value
    return Transition(st.run_id, st.step_id, st.index, source, value, at)
