"""Who may call what: permissions, the roles that hold them, and the per-route check.

Every route declares one permission with `permit(...)`; `/healthz` and `/readyz` are public.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from fnmatch import fnmatchcase
from typing import Any

from fastapi import Depends

from podium.bus.events import Actor


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


_VIEWER = frozenset({Permission.RUNS_READ, Permission.SYSTEM_READ})
_OPERATOR = _VIEWER | {
    Permission.RUNS_SUBMIT, Permission.RUNS_CANCEL, Permission.RUNS_SIGNAL,
    Permission.DLQ_WRITE, Permission.PAUSES_WRITE, Permission.CIRCUITS_WRITE,
}
_DEVELOPER = _OPERATOR | {Permission.WORKFLOWS_WRITE, Permission.SCHEDULES_WRITE}
_ADMIN = frozenset(Permission)

# viewer ⊂ operator ⊂ developer ⊂ admin
ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    "viewer": _VIEWER, "operator": _OPERATOR, "developer": _DEVELOPER, "admin": _ADMIN,
}
ROLES = tuple(ROLE_PERMISSIONS)


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of one request, once its key checked out."""

    actor: Actor
    role: str
    scope: str | None  # a glob over workflow names; None: every workflow

    def may(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS.get(self.role, frozenset())

    def sees(self, workflow: str) -> bool:
        """May this caller see runs and definitions of `workflow`?"""
        return self.scope is None or fnmatchcase(workflow, self.scope)


def permit(permission: Permission) -> Any:
    """The dependency a route declares: `Annotated[Principal, permit(Permission.X)]` (or in
    `dependencies=[...]`). 401 without a valid key, 403 when its role lacks `permission`."""
    return Depends(_Check(permission))


class _Check:
    """One instance per permission, so a test can read each route's permission off the app."""

    def __init__(self, permission: Permission) -> None:
        self.permission = permission

    async def __call__(self) -> Principal:  # the real check arrives with the auth middleware
        raise NotImplementedError
