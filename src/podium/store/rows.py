"""Mapping between the store's records and SQL rows, shared by the SQLite and PostgreSQL stores.

Both keep the same columns in the same order; only the SQL dialect around them differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from podium.events import Event
from podium.store.audit import content_hash
from podium.store.records import ApiKeyRecord, AuditEntry, DlqEntry, RunState, StepState

KEY_COLS = (
    "key_id, name, role, scope, secret_hash, created_at, expires_at, revoked_at, created_by"
)
WORKFLOW_COLS = "name, version, digest, registered_at, registered_by"


def run_params(r: RunState) -> tuple[Any, ...]:
    return (
        r.run_id,
        r.workflow,
        r.workflow_version,
        r.definition_digest,
        orjson.dumps(r.inputs),
        r.priority,
        r.status,
        r.created_at,
        r.started_at,
        r.finished_at,
        r.error,
        r.parent_run_id,
        r.cost_usd,
        r.tokens_in,
        r.tokens_out,
        r.owner,
        r.lease_until,
        r.stopping,
        r.trusted,
        r.trace_parent,
    )


def step_params(s: StepState) -> tuple[Any, ...]:
    return (
        s.run_id,
        s.step_id,
        s.index,
        s.status,
        s.attempts,
        s.started_at,
        s.finished_at,
        s.error,
        s.fallback_used,
        s.completed_seq,
        s.wake_at,
        s.compensation_error,
        s.cost_usd,
        s.tokens_in,
        s.tokens_out,
        s.output_blob,
        s.error_type,
        s.traceback,
    )


def event_params(e: Event) -> tuple[Any, ...]:
    return (
        e.event_id,
        e.event_type,
        e.timestamp,
        e.correlation_id,
        e.causation_id,
        e.source,
        e.priority,
        e.version,
        orjson.dumps(e.payload),
        e.actor,
    )


def dlq_params(d: DlqEntry) -> tuple[Any, ...]:
    failed = orjson.dumps(d.failed_steps).decode()
    return (d.run_id, d.workflow, d.status, d.error, failed, d.added_at)


def run_from_row(row: Sequence[Any]) -> RunState:
    return RunState(
        run_id=row[0],
        workflow=row[1],
        workflow_version=row[2],
        definition_digest=row[3],
        inputs=orjson.loads(row[4]),
        priority=row[5],
        status=row[6],
        created_at=row[7],
        started_at=row[8],
        finished_at=row[9],
        error=row[10],
        parent_run_id=row[11],
        cost_usd=row[12],
        tokens_in=row[13],
        tokens_out=row[14],
        owner=row[15],
        lease_until=row[16],
        stopping=row[17],
        trusted=bool(row[18]),
        trace_parent=row[19],
    )


def step_from_row(row: Sequence[Any]) -> StepState:
    return StepState(
        run_id=row[0],
        step_id=row[1],
        index=row[2],
        status=row[3],
        attempts=row[4],
        started_at=row[5],
        finished_at=row[6],
        error=row[7],
        fallback_used=bool(row[8]),
        completed_seq=row[9],
        wake_at=row[10],
        compensation_error=row[11],
        cost_usd=row[12],
        tokens_in=row[13],
        tokens_out=row[14],
        output_blob=row[15],
        error_type=row[16],
        traceback=row[17],
    )


def event_from_row(row: Sequence[Any]) -> tuple[int, Event]:
    return row[0], Event(
        event_id=row[1],
        event_type=row[2],
        timestamp=row[3],
        correlation_id=row[4],
        causation_id=row[5],
        source=row[6],
        priority=row[7],
        version=row[8],
        payload=orjson.loads(row[9]),
        actor=row[10],
    )


def audit_entry_from_row(row: Sequence[Any]) -> AuditEntry:
    """A chain link from `SELECT seq, <event columns>, prev_hash, hash`; the content hash is
    taken over the columns as read, so an edited row no longer matches its stored hash."""
    seq, event = event_from_row(row)
    return AuditEntry(seq, event, row[11], row[12], content_hash(row[1:11]))


def key_from_row(row: Sequence[Any]) -> ApiKeyRecord:
    return ApiKeyRecord(*row)


def key_params(k: ApiKeyRecord) -> tuple[Any, ...]:
    return (
        k.key_id, k.name, k.role, k.scope, k.secret_hash, k.created_at, k.expires_at,
        k.revoked_at, k.created_by,
    )


def dlq_from_row(row: Sequence[Any]) -> DlqEntry:
    return DlqEntry(
        run_id=row[0],
        workflow=row[1],
        status=row[2],
        error=row[3],
        failed_steps=tuple(orjson.loads(row[4])),
        added_at=row[5],
    )
