"""Who is using the dashboard: its pages are authenticated by the session cookie instead of a
bearer key; the principal found goes where the API's `permit` checks look for it.

A page asked for without a session redirects to the login form; anything else gets 401.
"""

from __future__ import annotations

from http.cookies import SimpleCookie
from urllib.parse import quote

from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from podium.api.auth import Principal, Refused
from podium.api.dashboard.sessions import COOKIE, Session, Sessions
from podium.api.errors import error_response, status_for
from podium.api.guard import Authenticator, client_of
from podium.errors import PodiumError

PREFIX = "/ui"
# Reached without a session: the login form, the files pages load, and `/` (a redirect).
OPEN_PATHS = frozenset({"/", f"{PREFIX}/login"})
STATIC = f"{PREFIX}/static/"


def is_dashboard(path: str) -> bool:
    """Paths served under the dashboard's session (the API keeps its bearer keys)."""
    return path in ("/", "/docs", PREFIX) or path.startswith(f"{PREFIX}/")


def cookie_of(headers: Headers, name: str) -> str | None:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except Exception:  # a malformed Cookie header is no session, not an error
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None else None


class DashboardGate:
    """Resolves the session cookie of dashboard requests to a Principal (the API key it
    logged in with is checked again each time: revocation ends the session at once)."""

    def __init__(self, app: ASGIApp, auth: Authenticator, sessions: Sessions) -> None:
        self.app = app
        self.auth = auth
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not is_dashboard(path):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        token = cookie_of(headers, COOKIE)
        session = self.sessions.get(token)
        state = scope.setdefault("state", {})
        state["session"], state["session_token"] = session, token
        if path in OPEN_PATHS or path.startswith(STATIC):
            await self.app(scope, receive, send)
            return
        try:
            principal = await self._principal(session, client_of(HTTPConnection(scope)))
        except PodiumError as exc:
            await error_response(status_for(exc), exc.code, str(exc))(scope, receive, send)
            return
        if principal is None:
            self.sessions.close(token)
            await _login_first(scope)(scope, receive, send)
            return
        state["principal"] = principal
        await self.app(scope, receive, send)

    async def _principal(self, session: Session | None, client: str) -> Principal | None:
        if session is None:
            return None
        if session.local is not None:
            return session.local
        try:
            return await self.auth.authenticate(f"Bearer {session.key}", client)
        except Refused:
            return None


def _login_first(scope: Scope) -> Response:
    if scope["method"] in ("GET", "HEAD"):
        target = scope["path"] + (f"?{scope['query_string'].decode()}"
                                  if scope.get("query_string") else "")
        return RedirectResponse(f"{PREFIX}/login?next={quote(target, safe='')}", status_code=303)
    return error_response(401, "unauthorized", "log in to the dashboard first: /ui/login")
