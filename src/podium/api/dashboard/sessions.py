"""Dashboard sessions: the cookie a browser holds after logging in, and one-time login tokens.

Kept in this server's memory: a restart logs everyone out, and each replica has its own.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from podium.api.auth import Principal

COOKIE = "podium_session"
LOGIN_CSRF_COOKIE = "podium_login_csrf"
SESSION_TTL_S = 12 * 3600.0
LOGIN_TOKEN_TTL_S = 10 * 60.0
MAX_SESSIONS = 10_000


def _digest(token: str) -> str:
    """Tokens are kept by hash: a dump of the table opens no session."""
    return hashlib.sha256(token.encode()).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass(slots=True)
class Session:
    """One logged-in browser. `key` is the API key it logged in with (checked again on every
    request, so a revoked or expired key ends the session); `local` is a session opened with
    the one-time token `podium serve` printed, which acts as an admin."""

    csrf: str
    expires_at: float
    key: str | None = None
    local: Principal | None = None
    flash: list[str] = field(default_factory=list)


class Sessions:
    """The sessions of one app and its unused login tokens."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._login_tokens: dict[str, float] = {}

    def open(self, *, key: str | None = None, local: Principal | None = None) -> str:
        """A new session; returns the cookie value (only its hash is kept)."""
        token = secrets.token_urlsafe(32)
        session = Session(secrets.token_urlsafe(32), self.clock() + SESSION_TTL_S, key, local)
        self._sessions[_digest(token)] = session
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return token

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        digest = _digest(token)
        session = self._sessions.get(digest)
        if session is not None and session.expires_at <= self.clock():
            del self._sessions[digest]
            return None
        return session

    def close(self, token: str | None) -> None:
        if token:
            self._sessions.pop(_digest(token), None)

    def new_login_token(self) -> str:
        """A random token that opens one admin session, once, within LOGIN_TOKEN_TTL_S."""
        token = secrets.token_urlsafe(32)
        now = self.clock()
        self._login_tokens = {d: t for d, t in self._login_tokens.items() if t > now}
        self._login_tokens[_digest(token)] = now + LOGIN_TOKEN_TTL_S
        return token

    def redeem(self, token: str) -> bool:
        """True once for a valid token; it is gone after that, used or expired."""
        expires_at = self._login_tokens.pop(_digest(token), None)
        return expires_at is not None and expires_at > self.clock()
