"""The `schedules` table's record and its row mapping, shared by the SQLite and PostgreSQL stores.

A schedule keeps the workflow's canonical definition, so it fires what was validated when added.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

SCHEDULE_COLS = (
    "schedule_id, name, workflow, definition, inputs, kind, spec, timezone, next_at,"
    " last_fired_at, last_run_id, created_at, pending_tick, pending_since, trusted"
)


@dataclass(frozen=True, slots=True)
class Schedule:
    """A delayed (`at`) or periodic (`cron`, `every`) run of one workflow with fixed inputs.

    `next_at` is the tick to fire next; None once an `at` schedule has fired (it is done and
    stays listed until removed). `pending_tick` is a tick a scheduler claimed and whose run it
    has not yet confirmed submitted: if that scheduler dies, another finishes the tick.
    """

    schedule_id: str
    name: str
    workflow: str
    definition: dict[str, Any]  # Workflow.to_json()
    inputs: dict[str, Any]
    kind: str  # cron | at | every
    spec: str
    timezone: str
    next_at: float | None
    created_at: float
    last_fired_at: float | None = None
    last_run_id: str | None = None
    pending_tick: float | None = None
    pending_since: float | None = None
    # False for a schedule added over the API: its runs run under `[security]`'s rules.
    trusted: bool = True

    @property
    def done(self) -> bool:
        return self.next_at is None and self.pending_tick is None


def schedule_params(s: Schedule) -> tuple[Any, ...]:
    return (
        s.schedule_id,
        s.name,
        s.workflow,
        orjson.dumps(s.definition).decode(),
        orjson.dumps(s.inputs).decode(),
        s.kind,
        s.spec,
        s.timezone,
        s.next_at,
        s.last_fired_at,
        s.last_run_id,
        s.created_at,
        s.pending_tick,
        s.pending_since,
        s.trusted,
    )


def schedule_from_row(row: Sequence[Any]) -> Schedule:
    return Schedule(
        schedule_id=row[0],
        name=row[1],
        workflow=row[2],
        definition=orjson.loads(row[3]),
        inputs=orjson.loads(row[4]),
        kind=row[5],
        spec=row[6],
        timezone=row[7],
        next_at=row[8],
        last_fired_at=row[9],
        last_run_id=row[10],
        created_at=row[11],
        pending_tick=row[12],
        pending_since=row[13],
        trusted=bool(row[14]),
    )


def finish_tick_sql(
    schedule_id: str, tick: float, run_id: str | None, now: float, mark: str
) -> tuple[str, tuple[Any, ...]]:
    """The UPDATE that clears a pending tick (`mark`: the driver's placeholder, ? or %s);
    with a run id it also records the fire. Only the tick's own claim matches."""
    where = f" WHERE schedule_id = {mark} AND pending_tick = {mark}"
    if run_id is None:
        return "UPDATE schedules SET pending_tick = NULL, pending_since = NULL" + where, (
            schedule_id,
            tick,
        )
    sql = (
        "UPDATE schedules SET pending_tick = NULL, pending_since = NULL,"
        f" last_fired_at = {mark}, last_run_id = {mark}" + where
    )
    return sql, (now, run_id, schedule_id, tick)
