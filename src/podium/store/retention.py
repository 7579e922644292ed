"""Retention's SQL, shared by both stores: which finished runs may go, and how a batch is counted.

A run may go once it is final, finished before the cutoff, held by no live lease, and neither
its parent nor a child of it is unfinished; a dead-lettered run only when asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from podium.store.records import AuditHead
from podium.store.sql import UNFINISHED, Dialect, Row, SQLStore

# Tables whose rows belong to one run and go with it (beside `runs` itself). The event log is
# not among them: it is the audit chain, pruned only from its start (`prune_audit`).
RUN_TABLES = ("steps", "signals", "dlq")


@dataclass(frozen=True, slots=True)
class GcBatch:
    """What one batch deleted (or, dry, would delete), and where the next one starts."""

    runs: int = 0
    steps: int = 0
    signals: int = 0
    dlq: int = 0
    next_after: float | None = None  # the newest `created_at` among the runs taken


@dataclass(frozen=True, slots=True)
class AuditPrune:
    """What one prune of the chain's start deleted, and the anchor it left (seq 0: none)."""

    events: int
    anchor_seq: int
    anchor_hash: str


def removable(dialect: Dialect, include_dlq: bool) -> str:
    """The WHERE clause of runs (`r`) that may go; marks: after, before, before, now.

    `created_at < before` lets the scan walk the `runs_created` index: a run finished before
    the cutoff was created before it too.
    """
    dlq = "" if include_dlq else " AND NOT EXISTS (SELECT 1 FROM dlq d WHERE d.run_id = r.run_id)"
    return dialect.sql(
        "r.created_at >= ? AND r.created_at < ? AND r.finished_at < ?"
        f" AND r.status NOT IN {UNFINISHED}"
        " AND (r.owner IS NULL OR r.lease_until IS NULL OR r.lease_until < ?)"
        " AND NOT EXISTS (SELECT 1 FROM runs p WHERE p.run_id = r.parent_run_id"
        f" AND p.status IN {UNFINISHED})"
        " AND NOT EXISTS (SELECT 1 FROM runs c WHERE c.parent_run_id = r.run_id"
        f" AND c.status IN {UNFINISHED})"
        + dlq
    )


def pick(dialect: Dialect, include_dlq: bool, lock: str = "") -> str:
    """The oldest removable runs, at most `limit` (the last mark): run_id, created_at."""
    return (
        f"SELECT r.run_id, r.created_at FROM runs r WHERE {removable(dialect, include_dlq)}"
        f" ORDER BY r.created_at LIMIT {dialect.mark}{lock}"
    )


def preview(dialect: Dialect, include_dlq: bool) -> str:
    """Counts of what a whole pass would delete (a dry run): runs, steps, signals, DLQ rows."""
    ids = f"SELECT r.run_id FROM runs r WHERE {removable(dialect, include_dlq)}"
    counts = ", ".join(
        f"(SELECT count(*) FROM {table} WHERE run_id IN ({ids}))" for table in RUN_TABLES
    )
    return f"SELECT (SELECT count(*) FROM runs r WHERE {removable(dialect, include_dlq)}), {counts}"


def prefix_before(rows: Sequence[Row], before: float) -> list[Row]:
    """The leading links (seq, ts, hash) made before `before`: the chain is cut at the first
    younger link, so what stays is still one unbroken chain."""
    for i, row in enumerate(rows):
        if row[1] >= before:
            return list(rows[:i])
    return list(rows)


_NO_SEQ = 1 << 62  # past any sequence number both stores can hold


class RetentionSQL(SQLStore):
    """The retention methods whose SQL is the same on both backends (reads only); each
    backend adds the deleting ones, one short transaction per batch."""

    async def gc_preview(self, before: float, *, include_dlq: bool = False) -> GcBatch:
        marks = [0.0, before, before, self.clock.now()]
        row = await self._one(preview(self.dialect, include_dlq), marks * (1 + len(RUN_TABLES)))
        assert row is not None
        return GcBatch(*(int(v) for v in row))

    async def audit_prune_preview(self, before: float) -> int:
        row = await self._one(
            "SELECT count(*) FROM events WHERE seq < coalesce("
            f"(SELECT min(seq) FROM events WHERE ts >= ?), {_NO_SEQ})",
            (before,),
        )
        return int(row[0]) if row else 0

    async def audit_anchor(self) -> AuditHead:
        rows = await self._all("SELECT seq, hash FROM audit_anchor WHERE id = 1")
        return AuditHead(*rows[0])
