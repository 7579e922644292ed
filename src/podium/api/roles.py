"""Permissions and the roles that hold them: metrics ⊂ viewer ⊂ operator ⊂ developer ⊂ admin.

Plain data, without FastAPI, so the CLI can check a role name without loading the server.
"""

from __future__ import annotations

from enum import StrEnum


class Permission(StrEnum):
    RUNS_READ = "runs:read"  # runs, their summaries and events
    SYSTEM_READ = "system:read"  # workers, queue, circuits, pauses, schedules, DLQ, spend
    RUNS_SUBMIT = "runs:submit"  # start a run of a registered workflow
    RUNS_CANCEL = "runs:cancel"
    RUNS_SIGNAL = "runs:signal"
    DLQ_WRITE = "dlq:write"  # replay, purge
    PAUSES_WRITE = "pauses:write"
    CIRCUITS_WRITE = "circuits:write"
    WORKFLOWS_WRITE = "workflows:write"  # register definitions
    SCHEDULES_WRITE = "schedules:write"
    KEYS_ADMIN = "keys:admin"
    AUDIT_READ = "audit:read"
    SETTINGS_ADMIN = "settings:admin"  # budgets and control settings
    METRICS_READ = "metrics:read"  # `/metrics`: counts and gauges, no run ids or payloads


# A scraper's key (Prometheus keeps it in its config): it reads `/metrics` and nothing else.
_METRICS = frozenset({Permission.METRICS_READ})
_VIEWER = _METRICS | {Permission.RUNS_READ, Permission.SYSTEM_READ}
_OPERATOR = _VIEWER | {
    Permission.RUNS_SUBMIT, Permission.RUNS_CANCEL, Permission.RUNS_SIGNAL,
    Permission.DLQ_WRITE, Permission.PAUSES_WRITE, Permission.CIRCUITS_WRITE,
}
_DEVELOPER = _OPERATOR | {Permission.WORKFLOWS_WRITE, Permission.SCHEDULES_WRITE}
_ADMIN = frozenset(Permission)

# metrics ⊂ viewer ⊂ operator ⊂ developer ⊂ admin
ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    "metrics": _METRICS, "viewer": _VIEWER, "operator": _OPERATOR, "developer": _DEVELOPER,
    "admin": _ADMIN,
}
ROLES = tuple(ROLE_PERMISSIONS)
