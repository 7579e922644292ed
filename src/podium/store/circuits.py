"""The circuit breaker's state machine over one stored row, shared by the SQL stores.

Each store reads the row under a lock, applies one of these pure functions, and writes back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from podium.store.records import CircuitRecord, CircuitResult

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

CIRCUIT_COLS = (
    "key, state, failures, successes, trials, opened_at, cooldown_s, forced, updated_at,"
    " trial_until"
)

# (the row as stored or None, now) -> the row to store and what happened
CircuitOp = Callable[[CircuitRecord | None, float], CircuitResult]


def half_open_at(record: CircuitRecord, cooldown_s: float) -> float | None:
    """When an open circuit may let a trial through (None: held open by an operator)."""
    if record.state != OPEN or record.forced:
        return None
    return (record.opened_at or 0.0) + cooldown_s


def circuit_from_row(row: tuple[Any, ...]) -> CircuitRecord:
    key, state, failures, successes, trials, opened_at, cooldown_s, forced, updated, until = row
    return CircuitRecord(
        key, state, failures, successes, trials, opened_at, cooldown_s, bool(forced), updated,
        until,
    )


def circuit_params(record: CircuitRecord) -> tuple[Any, ...]:
    return (
        record.key, record.state, record.failures, record.successes, record.trials,
        record.opened_at, record.cooldown_s, record.forced, record.updated_at, record.trial_until,
    )


def _opened(record: CircuitRecord, now: float, cooldown_s: float) -> CircuitRecord:
    return replace(
        record, state=OPEN, successes=0, trials=0, opened_at=now, cooldown_s=cooldown_s,
        trial_until=None,
    )


def failed(key: str, *, failures: int, cooldown_s: float) -> CircuitOp:
    """A call failed: count it; open at `failures` in a row, or at once when half-open."""

    def op(row: CircuitRecord | None, now: float) -> CircuitResult:
        record = row or CircuitRecord(key, CLOSED)
        counted = replace(record, failures=record.failures + 1)
        if record.state == HALF_OPEN or (record.state == CLOSED and counted.failures >= failures):
            return CircuitResult(_opened(counted, now, cooldown_s), "opened")
        return CircuitResult(counted)  # already open: a late failure of an earlier call

    return op


def succeeded(*, successes: int, trial: bool) -> CircuitOp:
    """A call succeeded: reset the count; a trial success may close a half-open circuit."""

    def op(row: CircuitRecord | None, now: float) -> CircuitResult:
        if row is None:
            return CircuitResult(None)
        if row.state == CLOSED:
            return CircuitResult(replace(row, failures=0))
        if row.state != HALF_OPEN or not trial:
            return CircuitResult(row)  # a call made before it opened: it proves nothing now
        if row.successes + 1 >= successes:
            closed = CircuitRecord(row.key, CLOSED, cooldown_s=row.cooldown_s)
            return CircuitResult(closed, "closed")
        return CircuitResult(
            replace(row, successes=row.successes + 1, trials=max(0, row.trials - 1))
        )

    return op


def take_trial(*, cooldown_s: float, half_open_max: int, lease_s: float) -> CircuitOp:
    """May a call go through? Open past its cool-down half-opens; half-open lends a trial slot
    (at most `half_open_max` at once; slots held past `trial_until` are presumed lost)."""

    def op(row: CircuitRecord | None, now: float) -> CircuitResult:
        if row is None or row.state == CLOSED:
            return CircuitResult(row)
        if row.state == OPEN:
            if row.forced or now < (row.opened_at or 0.0) + cooldown_s:
                return CircuitResult(row, allowed=False)
            trial = replace(row, state=HALF_OPEN, successes=0, trials=1, trial_until=now + lease_s)
            return CircuitResult(trial, "half_opened", trial=True)
        lost = row.trial_until is not None and now > row.trial_until
        in_flight = 0 if lost else row.trials
        if in_flight >= half_open_max:
            return CircuitResult(row, allowed=False)
        until = max(row.trial_until or 0.0, now + lease_s)
        return CircuitResult(replace(row, trials=in_flight + 1, trial_until=until), trial=True)

    return op


def release_trial(row: CircuitRecord | None, now: float) -> CircuitResult:
    """A trial slot handed back unused (the call was refused further on, or cancelled)."""
    if row is None or row.state != HALF_OPEN or row.trials == 0:
        return CircuitResult(row)
    return CircuitResult(replace(row, trials=row.trials - 1))


def forced(key: str, *, open_: bool) -> CircuitOp:
    """The operator's hand: hold it open until closed, or close it and reset its counts."""

    def op(row: CircuitRecord | None, now: float) -> CircuitResult:
        if open_:
            record = row or CircuitRecord(key, CLOSED)
            was_held = record.state == OPEN and record.forced
            held = replace(_opened(record, now, record.cooldown_s), forced=True)
            return CircuitResult(held, None if was_held else "opened")
        if row is None:
            return CircuitResult(None)
        transition = "closed" if row.state != CLOSED else None
        return CircuitResult(CircuitRecord(key, CLOSED, cooldown_s=row.cooldown_s), transition)

    return op


def to_store(
    result: CircuitResult, old: CircuitRecord | None, now: float
) -> tuple[CircuitResult, CircuitRecord | None]:
    """The result with `updated_at` stamped, and the row to write (None: nothing changed)."""
    new = result.circuit
    if new is None or new == old:
        return result, None
    new = replace(new, updated_at=now)
    return replace(result, circuit=new), new
