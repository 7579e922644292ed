"""Rendering a dashboard page: the Jinja environment (autoescaped) and what every page gets
(the caller, its CSRF token, what it may do, messages from the last action).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse

from podium.api.auth import SCOPED_PERMISSIONS, Permission, Principal
from podium.api.dashboard.colors import STATUS_COLORS
from podium.api.dashboard.sessions import Session

ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("podium.api.dashboard", "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def when(ts: float | None) -> str:
    if ts is None:
        return "—"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def seconds(value: float | None) -> str:
    """A duration as people read it: 840 ms, 3.72 s, 12.5 min, 6 h, 1 d."""
    if value is None:
        return "—"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if value >= 2 * size or (unit == "min" and value >= 120):
            return f"{value / size:.3g} {unit}"
    return f"{value:.3g} s"


ENV.filters["when"] = when
ENV.filters["seconds"] = seconds


def may(principal: Principal, permission: Permission) -> bool:
    """What the API would allow: the role holds it, and a scoped key only the scoped ones."""
    if not principal.may(permission):
        return False
    return principal.scope is None or permission in SCOPED_PERMISSIONS


def session_of(request: Request) -> Session | None:
    session: Session | None = request.state.session
    return session


def page(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    principal: Principal | None = getattr(request.state, "principal", None)
    session = session_of(request)
    flash: list[str] = []
    if session is not None and not template.startswith("_"):
        flash, session.flash = session.flash, []
    html = ENV.get_template(template).render(
        request=request, principal=principal, csrf=session.csrf if session else "",
        flash=flash, P=Permission, statuses=tuple(STATUS_COLORS),
        can=(lambda p: principal is not None and may(principal, p)),
        **context,
    )
    return HTMLResponse(html, status_code=status_code)
