"""Who may call what: permissions, the roles that hold them, and the per-route check.

Every route declares one permission with `permit(...)`; `/healthz` and `/readyz` are public.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from fastapi import Depends, Request

from podium.api.roles import ROLE_PERMISSIONS, ROLES, Permission
from podium.events import Actor

__all__ = [
    "METRICS_PATH", "PUBLIC_PATHS", "ROLES", "ROLE_PERMISSIONS", "SCOPED_PERMISSIONS", "Permission",
    "Principal", "Refused", "declared_checks", "forbidden", "permit", "principal_of",
    "unauthorized",
]


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



# The probes: no key, no Host check (a kubelet probes the pod's address), no detail in bodies.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})
# Prometheus's scrape path: a key with `metrics:read`, unless `[metrics] auth` opens it.
METRICS_PATH = "/metrics"

# What a key scoped to a workflow pattern may still use: routes about runs and definitions,
# which filter by workflow. System-wide routes (workers, keys, audit, queue...) answer 403.
SCOPED_PERMISSIONS = frozenset({
    Permission.RUNS_READ, Permission.RUNS_SUBMIT, Permission.RUNS_CANCEL,
    Permission.RUNS_SIGNAL, Permission.WORKFLOWS_WRITE,
})


class Refused(Exception):
    """A request refused for who sent it: 401, 403 or 429, in the API's error shape."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None,
        *, key_id: str = "",
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}
        self.key_id = key_id  # the key id the refused request presented, if it parsed


def unauthorized(message: str, key_id: str = "") -> Refused:
    return Refused(401, "unauthorized", message, {"WWW-Authenticate": "Bearer"}, key_id=key_id)


def forbidden(message: str) -> Refused:
    return Refused(403, "forbidden", message)


def permit(permission: Permission, *, system: bool | None = None) -> Any:
    """The dependency a route declares: `Annotated[Principal, permit(Permission.X)]` (or in
    `dependencies=[...]`). 401 without a valid key, 403 when its role lacks `permission`.
    `system` routes (default: permissions outside SCOPED_PERMISSIONS) are refused to scoped
    keys; pass `system=False` for a route that filters what it shows by workflow."""
    return Depends(_Check(permission, permission not in SCOPED_PERMISSIONS if system is None
                          else system))


class _Check:
    """One instance per route declaration, so a test can read each route's permission (and
    whether scoped keys may use it) off the app."""

    def __init__(self, permission: Permission, system: bool) -> None:
        self.permission = permission
        self.system = system

    async def __call__(self, request: Request) -> Principal:
        principal: Principal | None = getattr(request.state, "principal", None)
        if principal is None:  # the auth middleware lets no such request through; be sure
            raise unauthorized("an API key is required: send `Authorization: Bearer <key>`")
        if not principal.may(self.permission):
            raise forbidden(
                f"role {principal.role} lacks the permission {self.permission.value}"
            )
        if self.system and principal.scope is not None:
            raise forbidden(
                f"a key scoped to {principal.scope!r} cannot use system-wide routes"
            )
        return principal


def principal_of(request: Request) -> Principal:
    """The caller, for handlers that need it beside their `permit` dependency."""
    principal: Principal = request.state.principal
    return principal


def declared_checks(route: Any) -> list[_Check]:
    """The `permit` checks a route declares, nested dependencies included (for tests)."""
    dependant = getattr(route, "dependant", None)
    found: list[_Check] = []
    stack = [dependant] if dependant is not None else []
    while stack:
        current = stack.pop()
        if isinstance(current.call, _Check):
            found.append(current.call)
        stack.extend(current.dependencies)
    return found
