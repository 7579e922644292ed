"""The audit hash chain over the event log: how a link is computed, and how a chain is checked.

Each event row is a link: `hash = sha256(prev_hash + content_hash + seq)`; content covers it all.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from podium.store.records import AuditEntry, AuditHead

GENESIS = "0" * 64  # the prev_hash of the first link


def content_hash(params: Sequence[Any]) -> str:
    """The hash of one event row as stored (`rows.event_params` order: event_id, event_type,
    ts, run_id, causation_id, source, priority, version, payload bytes, actor). The
    timestamp goes in as float.hex, exact whichever database kept it."""
    event_id, event_type, ts, run_id, causation_id, source, priority, version, payload, actor = (
        params
    )
    head = orjson.dumps([
        event_id, event_type, float(ts).hex(), run_id, causation_id, source, priority,
        version, actor,
    ])
    digest = hashlib.sha256(head)
    digest.update(b"\n")
    digest.update(payload.encode() if isinstance(payload, str) else bytes(payload))
    return digest.hexdigest()


def link(prev_hash: str, content: str, seq: int) -> str:
    """The hash of link `seq` (PostgreSQL computes the same in podium_append_events)."""
    return hashlib.sha256(f"{prev_hash}{content}{seq}".encode()).hexdigest()


def chain(
    head_seq: int, head_hash: str, rows: Sequence[Sequence[Any]]
) -> tuple[list[tuple[Any, ...]], int, str]:
    """Links event rows after the head: each row gets (seq, *row, prev_hash, hash); returns
    them and the new head."""
    linked = []
    for row in rows:
        head_seq += 1
        new_hash = link(head_hash, content_hash(row), head_seq)
        linked.append((head_seq, *row, head_hash, new_hash))
        head_hash = new_hash
    return linked, head_seq, head_hash


def relink(
    head_hash: str, rows: Sequence[Sequence[Any]]
) -> tuple[list[tuple[str, str, int]], str]:
    """Links stored rows `(seq, *event row)` that predate the chain (a store upgraded to it),
    in their order: (prev_hash, hash, seq) per row, and the new head hash."""
    updates = []
    for seq, *row in rows:
        new_hash = link(head_hash, content_hash(row), seq)
        updates.append((head_hash, new_hash, seq))
        head_hash = new_hash
    return updates, head_hash


@dataclass(frozen=True, slots=True)
class Verdict:
    """What `podium audit verify` found: how many links held, and the first that did not."""

    checked: int
    head_hash: str
    problem: str | None = None
    bad_seq: int | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


async def verify(
    entries: AsyncIterator[AuditEntry], head: AuditHead, anchor: AuditHead | None = None
) -> Verdict:
    """Walks the chain in order and names the first link that is edited, missing, inserted
    or out of order; then checks that the chain ends at the recorded head. A chain whose
    start was pruned (retention) begins after `anchor`, the last link deleted: its first
    kept link must name the anchor's hash."""
    prev_seq, prev_hash, checked = (anchor.seq, anchor.hash, 0) if anchor else (0, GENESIS, 0)
    async for entry in entries:
        problem = _link_problem(entry, prev_seq, prev_hash)
        if problem is not None:
            return Verdict(checked, prev_hash, problem, entry.seq)
        prev_seq, prev_hash, checked = entry.seq, entry.hash, checked + 1
    if (head.seq, head.hash) != (prev_seq, prev_hash):
        problem = (
            f"the chain ends at entry {prev_seq} but the recorded head is entry {head.seq}:"
            " entries at the end were deleted"
            if head.seq > prev_seq
            else f"the chain ends at entry {prev_seq}, past the recorded head {head.seq}"
        )
        return Verdict(checked, prev_hash, problem, prev_seq + 1)
    return Verdict(checked, prev_hash)


def _link_problem(entry: AuditEntry, prev_seq: int, prev_hash: str) -> str | None:
    # Sequence numbers may have gaps (a store upgraded to the chain kept its old ones): the
    # links, which cover each number, tell what was changed.
    seq = entry.seq
    if entry.prev_hash != prev_hash:
        return (
            f"entry {seq} does not link to the entry before it ({prev_seq}): an entry was"
            " deleted, inserted or moved between them"
        )
    if link(prev_hash, entry.content_hash, seq) != entry.hash:
        event_id = entry.event.event_id
        return f"entry {seq} (event {event_id}) was edited: its content does not match its hash"
    return None


def entry_json(entry: AuditEntry) -> dict[str, Any]:
    """One link as `podium audit list --json` and `GET /v1/audit` show it."""
    return {"seq": entry.seq, **entry.event.to_json(), "prev_hash": entry.prev_hash,
            "hash": entry.hash}
