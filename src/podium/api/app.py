"""`create_app(engine)`: the FastAPI app of the HTTP API, over an engine already running.

The engine's lifetime belongs to the caller (`podium serve`, a test), not to the app.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import FastAPI
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from podium.api import (
    access,
    audit,
    circuits,
    dashboard,
    dlq,
    events,
    health,
    history,
    metrics,
    pauses,
    runs,
    schedules,
    system,
    workflows,
)
from podium.api.errors import install_error_handlers
from podium.api.guard import Authenticator, AuthMiddleware, install_auth
from podium.api.middleware import (
    LOOPBACK_HOSTS,
    BodyGuard,
    HostCheck,
    OriginCheck,
    SecurityHeaders,
)
from podium.api.streams import EventStreams
from podium.engine.engine import Engine

ROUTERS = (
    runs, history, workflows, events, dlq, pauses, circuits, schedules, system, health,
    access, audit, metrics,
)


@dataclass(frozen=True)
class ApiOptions:
    """How `podium serve` was started; the defaults are the locked-down ones."""

    auth: bool = True  # False only with `--insecure-no-auth`: every caller is an admin
    # Host names answered to; empty: `[api] allowed_hosts`, else the loopback names.
    allowed_hosts: tuple[str, ...] = ()
    tls: bool = False  # adds Strict-Transport-Security
    clock: Callable[[], float] = time.time  # key expiry
    monotonic: Callable[[], float] = time.monotonic  # the failed-authentication window


def create_app(
    engine: Engine, *, streams: EventStreams | None = None, options: ApiOptions | None = None
) -> FastAPI:
    """The HTTP API over `engine`; `streams` (to close SSE streams on shutdown) is made if
    not given, and kept on `app.state.streams`.

    The dashboard (`/ui`, and Swagger UI at `/docs`) is served from the package's own files;
    its pages use a session cookie instead of a bearer key. `/openapi.json` is served behind
    a key (`runs:read`)."""
    options = options or ApiOptions()
    control = engine.settings.control
    auth = Authenticator(
        engine.store, max_failures_per_minute=control.api.max_failed_auth_per_minute,
        clock=options.clock, monotonic=options.monotonic, insecure=not options.auth,
    )
    sessions = dashboard.Sessions(options.clock)
    app = FastAPI(
        title="podium",
        summary="Durable orchestration engine for AI-agent and workflow pipelines",
        version="1",
        docs_url=None, redoc_url=None, openapi_url=None,
        middleware=_middleware(engine, options, auth, sessions),
    )
    app.state.engine = engine
    app.state.streams = streams or EventStreams()
    install_error_handlers(app)
    install_auth(app, auth)
    for module in ROUTERS:
        app.include_router(module.router)
    access.add_openapi_route(app)
    dashboard.install(app, sessions, tls=options.tls)
    return app


def _middleware(
    engine: Engine, options: ApiOptions, auth: Authenticator, sessions: dashboard.Sessions
) -> list[Middleware]:
    """Outermost first: headers go on every answer, a forged Host is refused before anything
    else, CORS preflights are answered, Origin and content type checked, then the key (or, on
    the dashboard's paths, the session), and only then is the body read."""
    control = engine.settings.control
    hosts = options.allowed_hosts or tuple(control.api.allowed_hosts) or LOOPBACK_HOSTS
    stack = [
        Middleware(SecurityHeaders, hsts=options.tls, csp_for=dashboard.csp_for),
        Middleware(HostCheck, allowed_hosts=hosts),
    ]
    if control.api.cors_origins:
        stack.append(Middleware(
            CORSMiddleware, allow_origins=control.api.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        ))
    stack += [
        Middleware(OriginCheck, cors_origins=control.api.cors_origins,
                   form_paths=dashboard.is_dashboard),
        Middleware(AuthMiddleware, auth=auth, open_metrics=control.metrics.auth,
                   bypass=dashboard.is_dashboard),
        Middleware(dashboard.DashboardGate, auth=auth, sessions=sessions),
        Middleware(
            BodyGuard, max_bytes=control.security.max_request_bytes,
            max_depth=control.security.max_json_depth,
        ),
    ]
    return stack

