"""The dashboard: server-rendered pages over the API's permissions, built into `podium serve`.

`install(app, sessions)` adds its routes and files; `create_app` stacks its gate middleware.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import swagger_ui_bundle  # type: ignore[import-untyped]
from fastapi import FastAPI
from fastapi.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from podium.api.dashboard import actions, docs, login, run_page, runs_list, start, system_page
from podium.api.dashboard.colors import status_css
from podium.api.dashboard.gate import PREFIX, DashboardGate, is_dashboard
from podium.api.dashboard.sessions import Sessions

__all__ = ["PREFIX", "DashboardGate", "Sessions", "csp_for", "install", "is_dashboard"]

ROUTERS = (login, runs_list, run_page, system_page, start, actions, docs)
STATIC_MAX_AGE_S = 3600

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
# Swagger UI sets style attributes from its script.
DOCS_CSP = PAGE_CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")


def csp_for(path: str) -> str | None:
    """The dashboard's Content-Security-Policy: its own files only; None for the API's."""
    if path == "/docs":
        return DOCS_CSP
    return PAGE_CSP if is_dashboard(path) else None


class _Cached(StaticFiles):
    """Files of the installed package: the same until an upgrade, so cached for a while."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["cache-control"] = f"private, max-age={STATIC_MAX_AGE_S}"
        return response


def install(app: FastAPI, sessions: Sessions, *, tls: bool = False) -> None:
    app.state.sessions = sessions
    app.state.dashboard_tls = tls
    css = status_css()

    @app.get(f"{PREFIX}/static/status.css", include_in_schema=False)
    async def status_colours() -> Response:
        return Response(css, media_type="text/css",
                        headers={"cache-control": f"private, max-age={STATIC_MAX_AGE_S}"})

    for module in ROUTERS:
        app.include_router(module.router)
    app.mount(f"{PREFIX}/static/swagger",
              _Cached(directory=Path(swagger_ui_bundle.swagger_ui_path)), name="swagger")
    app.mount(f"{PREFIX}/static",
              _Cached(directory=str(files("podium.api.dashboard") / "static")), name="static")
