"""The JSON documents of stored records, as `--json` prints them and the HTTP API returns them.

Pure functions of records (no I/O), so the CLI and the API print the very same documents.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from podium.events import Event, utc_iso
from podium.model.workflow import PRIORITY_RANK
from podium.store.circuits import half_open_at
from podium.store.records import ApiKeyRecord, CircuitRecord, DlqEntry, QueueStat, RunState
from podium.store.schedules import Schedule
from podium.store.spend import ScopeUsage, SpendGroup, scope_title


def iso(ts: float | None) -> str | None:
    return None if ts is None else utc_iso(ts)


# -- runs and events ----------------------------------------------------------------------------


def run_duration_s(row: RunState) -> float | None:
    if row.finished_at is None:
        return None
    return round(row.finished_at - (row.started_at or row.created_at), 6)


def run_json(row: RunState) -> dict[str, Any]:
    """One run of `podium runs --json`: the fields of the API's listing, and its duration."""
    return {
        "run_id": row.run_id, "workflow": row.workflow,
        "workflow_version": row.workflow_version, "status": row.status,
        "priority": row.priority, "created_at": utc_iso(row.created_at),
        "started_at": iso(row.started_at), "finished_at": iso(row.finished_at),
        "duration_s": run_duration_s(row), "error": row.error,
        "parent_run_id": row.parent_run_id,
    }


def event_json(seq: int, event: Event) -> dict[str, Any]:
    """One stored event with its place in the log (`podium events --json`)."""
    return {"seq": seq, **event.to_json()}


# -- DLQ, circuits, queue -----------------------------------------------------------------------


def dlq_json(entry: DlqEntry) -> dict[str, Any]:
    return {
        "run_id": entry.run_id, "workflow": entry.workflow, "status": entry.status,
        "error": entry.error, "failed_steps": list(entry.failed_steps),
        "added_at": utc_iso(entry.added_at),
    }


def circuit_json(record: CircuitRecord, now: float) -> dict[str, Any]:
    at = half_open_at(record, record.cooldown_s)
    return {
        "key": record.key,
        "state": record.state,
        "failures": record.failures,
        "successes": record.successes,
        "trials": record.trials,
        "opened_at": iso(record.opened_at),
        "half_open_at": iso(at),
        "half_open_in_s": round(max(0.0, at - now), 3) if at is not None else None,
        "cooldown_s": record.cooldown_s,
        "forced": record.forced,
        "updated_at": utc_iso(record.updated_at),
    }


def queue_json(
    stats: Iterable[QueueStat], ttl_s: Mapping[str, float], now: float
) -> dict[str, Any]:
    """Every priority, most urgent first, with its depth, oldest wait and TTL (`podium queue`)."""
    by_priority = {s.priority: s for s in stats}
    rows = []
    for priority in PRIORITY_RANK:
        stat = by_priority.get(priority)
        oldest = stat.oldest_created_at if stat is not None else None
        rows.append({
            "priority": priority,
            "depth": stat.depth if stat is not None else 0,
            "oldest_queued_at": iso(oldest),
            "oldest_wait_s": round(now - oldest, 3) if oldest is not None else None,
            "ttl_s": ttl_s[priority],
        })
    return {"priorities": rows}


def pauses_json(paused: Iterable[tuple[str, str]]) -> dict[str, Any]:
    return {"pauses": [{"scope": scope, "name": name} for scope, name in sorted(paused)]}


# -- spend and budgets --------------------------------------------------------------------------


def sorted_spend(groups: Sequence[SpendGroup], by: str) -> list[SpendGroup]:
    """Time buckets in time order; everything else by spend, largest first."""
    if by in ("day", "hour"):
        return sorted(groups, key=lambda g: g.key)
    return sorted(groups, key=lambda g: (-g.usd, g.key))


def _group_json(group: SpendGroup) -> dict[str, Any]:
    return {
        "usd": group.usd,
        "tokens": {"input": group.tokens_in, "output": group.tokens_out},
        "calls": group.calls,
        "estimated_usd": group.estimated_usd,
    }


def spend_json(
    by: str, since: float, workflow: str | None, groups: Sequence[SpendGroup]
) -> dict[str, Any]:
    """`podium spend --json`: the groups (as `sorted_spend` orders them) and their total."""
    total = SpendGroup(
        "total",
        sum(g.usd for g in groups),
        sum(g.tokens_in for g in groups),
        sum(g.tokens_out for g in groups),
        sum(g.calls for g in groups),
        sum(g.estimated_usd for g in groups),
    )
    return {
        "by": by,
        "since": utc_iso(since),
        "workflow": workflow,
        "groups": [{"key": g.key, **_group_json(g)} for g in groups],
        "total": _group_json(total),
    }


def budget_json(usage: ScopeUsage, warn_at: float, action: str) -> dict[str, Any]:
    """One budget scope against its limit (`podium budgets --json` lists them as `scopes`)."""
    scope = usage.scope
    return {
        "scope": scope.scope,
        "title": scope_title(scope),
        "window_s": scope.window_s,
        "limit_usd": scope.limit_usd,
        "spent_usd": usage.spent_usd,
        "held_usd": usage.held_usd,
        "remaining_usd": max(scope.limit_usd - usage.spent_usd - usage.held_usd, 0.0),
        "warn_at": warn_at,
        "action": action,
    }


# -- schedules ----------------------------------------------------------------------------------


def schedule_status(s: Schedule) -> str:
    return "done" if s.done else ("firing" if s.pending_tick is not None else "active")


def schedule_json(s: Schedule) -> dict[str, Any]:
    """One schedule as `podium schedule list --json` prints it."""
    return {
        "schedule_id": s.schedule_id, "name": s.name, "workflow": s.workflow,
        "workflow_version": s.definition.get("version", 1), "kind": s.kind, "spec": s.spec,
        "timezone": s.timezone, "inputs": s.inputs, "status": schedule_status(s),
        "next_at": iso(s.next_at), "last_fired_at": iso(s.last_fired_at),
        "last_run_id": s.last_run_id, "created_at": utc_iso(s.created_at),
    }


def key_json(key: ApiKeyRecord) -> dict[str, Any]:
    """A key as listings show it: never the key, never its hash."""
    def when(ts: float | None) -> str | None:
        return None if ts is None else utc_iso(ts)

    return {
        "key_id": key.key_id, "name": key.name, "role": key.role, "scope": key.scope,
        "created_at": when(key.created_at), "expires_at": when(key.expires_at),
        "revoked_at": when(key.revoked_at), "created_by": key.created_by,
    }
