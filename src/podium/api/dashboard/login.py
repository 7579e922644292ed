"""Logging in to the dashboard: with an API key (its role is the session's), or with the
one-time token `podium serve` prints on loopback; logging out.

A key that fails counts toward the same per-address limit as a bad bearer key, and is audited.
"""

from __future__ import annotations

import getpass
import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from podium.api.auth import Principal, Refused
from podium.api.dashboard.forms import back, checked_form, fields
from podium.api.dashboard.gate import PREFIX
from podium.api.dashboard.render import page
from podium.api.dashboard.sessions import COOKIE, LOGIN_CSRF_COOKIE, Sessions, same
from podium.api.guard import ANONYMOUS, Authenticator, client_of
from podium.events import Actor

router = APIRouter(include_in_schema=False)
HOME = f"{PREFIX}/runs"


def _sessions(request: Request) -> Sessions:
    sessions: Sessions = request.app.state.sessions
    return sessions


def _auth(request: Request) -> Authenticator:
    auth: Authenticator = request.app.state.auth
    return auth


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or bool(request.app.state.dashboard_tls)


def _enter(request: Request, target: str, **opened: object) -> RedirectResponse:
    token = _sessions(request).open(**opened)  # type: ignore[arg-type]
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict",
                        secure=_secure(request), path="/")
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=f"{PREFIX}/login")
    return response


def local_principal(client: str) -> Principal:
    """Whoever holds the one-time token: the local user who started `podium serve`."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name in this environment
        user = "local"
    # No key role on the actor: audit entries read `local:<user>`, as the CLI's `cli:<user>`.
    return Principal(Actor(f"local:{user}", user, None, client), "admin", None)


@router.get("/", response_class=RedirectResponse)
async def root() -> RedirectResponse:
    return RedirectResponse(HOME, status_code=303)


@router.get(PREFIX, response_class=RedirectResponse)
async def home() -> RedirectResponse:
    return RedirectResponse(HOME, status_code=303)


@router.get(f"{PREFIX}/login", response_model=None)
async def login_form(request: Request, next: str = "", token: str = "") -> Response:
    target = back({"next": next}, HOME)
    client = client_of(request)
    if token and _sessions(request).redeem(token):
        return _enter(request, target, local=local_principal(client))
    if _auth(request).insecure:
        return _enter(request, target, local=Principal(Actor(ANONYMOUS, client=client), "admin",
                                                       None))
    return _login_page(request, target, "the login link was used or expired" if token else "")


def _login_page(request: Request, target: str, error: str, status: int = 200) -> HTMLResponse:
    csrf = secrets.token_urlsafe(24)
    response = page(request, "login.html", status, login_csrf=csrf, next=target, error=error)
    response.set_cookie(LOGIN_CSRF_COOKIE, csrf, httponly=True, samesite="strict",
                        secure=_secure(request), path=f"{PREFIX}/login")
    return response


@router.post(f"{PREFIX}/login", response_model=None)
async def login(request: Request) -> Response:
    form = await fields(request)
    target = back(form, HOME)
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not cookie or not same(form.get("csrf", ""), cookie):
        return _login_page(request, target, "the form expired; try again", 403)
    key = form.get("key", "").strip()
    auth = _auth(request)
    client = client_of(request)
    try:
        await auth.authenticate(f"Bearer {key}", client)
    except Refused as refused:
        await auth.refusal(refused, Actor(ANONYMOUS, client=client), f"POST {PREFIX}/login")
        return _login_page(request, target, refused.message, refused.status)
    return _enter(request, target, key=key)


@router.post(f"{PREFIX}/logout", response_model=None)
async def logout(
    request: Request, form: Annotated[dict[str, str], Depends(checked_form)]
) -> Response:
    _sessions(request).close(request.state.session_token)
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response
