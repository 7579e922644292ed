"""Reading a dashboard form: URL-encoded, size-bounded (by the app's body guard), and only
with the session's CSRF token in it.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.exceptions import RequestValidationError

from podium.api.auth import forbidden
from podium.api.dashboard.render import session_of
from podium.api.dashboard.sessions import same

MAX_FIELDS = 100


async def fields(request: Request) -> dict[str, str]:
    body = (await request.body()).decode("utf-8", errors="replace")
    try:
        pairs = parse_qsl(body, keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except ValueError:
        raise RequestValidationError([{
            "loc": ("body",), "type": "value_error",
            "msg": f"a form holds at most {MAX_FIELDS} fields",
        }]) from None
    return dict(pairs)


async def checked_form(request: Request) -> dict[str, str]:
    """The posted fields, once their `csrf` matches the session's (else 403)."""
    form = await fields(request)
    session = session_of(request)
    token = form.get("csrf") or request.headers.get("x-csrf-token", "")
    if session is None or not token or not same(token, session.csrf):
        raise forbidden("the form's CSRF token is missing or stale; reload the page")
    return form


def back(form: dict[str, str], default: str) -> str:
    """Where to go after an action: a dashboard path from the form, never another site."""
    target = form.get("next", "")
    return target if target.startswith("/ui/") and "//" not in target else default


def flash(request: Request, message: str) -> None:
    session = session_of(request)
    if session is not None:
        session.flash.append(message)
