"""Authentication: who sent a request, from its `Authorization: Bearer` key, and refusals.

Failed attempts are counted per client address; past the limit they get 429 instead of 401.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from podium.api.auth import METRICS_PATH, PUBLIC_PATHS, Principal, Refused, unauthorized
from podium.api.errors import error_response, status_for
from podium.api.keys import VerifiedKeys, parse_token, verify
from podium.errors import PodiumError
from podium.events import Actor, audit_event
from podium.store.base import Store
from podium.store.records import ApiKeyRecord

log = structlog.get_logger("podium.api")

ANONYMOUS = "anonymous"
WINDOW_S = 60.0
# Refusals written to the audit log per minute, all clients together: a flood of bad keys
# must not flood the chain. The count of those left out goes with the next one written.
MAX_AUDITED_REFUSALS_PER_MINUTE = 120

Clock = Callable[[], float]


class FailureWindow:
    """Events per key (a client address) in the last `window_s` seconds of `clock`, a
    monotonic clock passed in so tests need not wait for a minute to pass."""

    def __init__(
        self, limit: int, clock: Clock = time.monotonic, window_s: float = WINDOW_S,
        max_keys: int = 10_000,
    ) -> None:
        self.limit, self.clock, self.window_s, self.max_keys = limit, clock, window_s, max_keys
        self._times: OrderedDict[str, deque[float]] = OrderedDict()

    def blocked_for(self, key: str) -> float | None:
        """Seconds until `key` may fail again, or None if it is under the limit."""
        times = self._recent(key)
        if len(times) < self.limit:
            return None
        return max(0.0, times[0] + self.window_s - self.clock())

    def add(self, key: str) -> None:
        self._recent(key).append(self.clock())
        self._times.move_to_end(key)
        while len(self._times) > self.max_keys:  # bounded memory under a spray of addresses
            self._times.popitem(last=False)

    def _recent(self, key: str) -> deque[float]:
        times = self._times.setdefault(key, deque())
        horizon = self.clock() - self.window_s
        while times and times[0] <= horizon:
            times.popleft()
        return times


class Authenticator:
    """Checks keys against the store (every request: revocation counts at once) and writes
    the audit entries of refusals."""

    def __init__(
        self,
        store: Store,
        *,
        max_failures_per_minute: int,
        clock: Clock = time.time,
        monotonic: Clock = time.monotonic,
        insecure: bool = False,
    ) -> None:
        self.store = store
        self.clock = clock
        self.insecure = insecure
        self.verified = VerifiedKeys()
        self.failures = FailureWindow(max_failures_per_minute, monotonic)
        self._audits = FailureWindow(MAX_AUDITED_REFUSALS_PER_MINUTE, monotonic)
        self._unaudited = 0

    async def authenticate(self, authorization: str | None, client: str) -> Principal:
        """The caller, or Refused (401; 429 once this address failed too often)."""
        if self.insecure:
            return Principal(Actor(ANONYMOUS, client=client), "admin", None)
        try:
            return await self._check(authorization, client)
        except Refused:
            retry_s = self.failures.blocked_for(client)
            if retry_s is not None:
                raise _too_many(retry_s) from None
            self.failures.add(client)
            raise

    async def _check(self, authorization: str | None, client: str) -> Principal:
        token = _bearer(authorization)
        if token is None:
            raise unauthorized("an API key is required: send `Authorization: Bearer <key>`")
        parsed = parse_token(token)
        if parsed is None:
            raise unauthorized("the API key is malformed; keys read pdm_<key id>_<secret>")
        record = await self.store.get_key(parsed.key_id)
        # Revoked and expired are told only to whoever holds the secret.
        if record is None or not await self._verified(token, record):
            raise unauthorized("the API key is not valid", parsed.key_id)
        if record.revoked_at is not None:
            raise unauthorized("the API key was revoked", record.key_id)
        if record.expires_at is not None and record.expires_at <= self.clock():
            raise unauthorized("the API key expired", record.key_id)
        actor = Actor(record.key_id, record.name, record.role, client)
        return Principal(actor, record.role, record.scope)

    async def _verified(self, token: str, record: ApiKeyRecord) -> bool:
        if self.verified.known(token, record):
            return True
        # scrypt takes tens of milliseconds of CPU: off the loop.
        if not await asyncio.to_thread(verify, token, record):
            return False
        self.verified.add(token, record)
        return True

    async def refusal(self, refused: Refused, actor: Actor, target: str) -> JSONResponse:
        """The response to a refused request, after its audit entry (429s are not audited:
        they are the flood the limit holds back)."""
        if refused.status != 429:
            await self._audit(refused, actor, target)
        response = error_response(refused.status, refused.code, refused.message)
        response.headers.update(refused.headers)
        return response

    async def _audit(self, refused: Refused, actor: Actor, target: str) -> None:
        if self._audits.blocked_for("all") is not None:
            self._unaudited += 1
            return
        self._audits.add("all")
        details: dict[str, Any] = {"reason": refused.message}
        if refused.key_id:
            details["key_id"] = refused.key_id
        if self._unaudited:
            details["unaudited_before"], self._unaudited = self._unaudited, 0
        event = audit_event(actor, "auth.denied", target, str(refused.status), **details)
        try:
            await self.store.append_audit([event])
        except PodiumError as exc:  # the refusal stands; the log says why it went unrecorded
            log.warning("audit of a refused request failed", error=str(exc))


def _bearer(authorization: str | None) -> str | None:
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _too_many(retry_s: float) -> Refused:
    seconds = max(1, math.ceil(retry_s))
    return Refused(
        429, "too_many_failures",
        f"too many failed authentications from this address; retry in {seconds}s",
        {"Retry-After": str(seconds)},
    )


def client_of(conn: HTTPConnection) -> str:
    return conn.client.host if conn.client else "unknown"


class AuthMiddleware:
    """Authenticates every request but the probes before its body is read; the principal
    goes to `request.state.principal`, where `permit` checks its role. `open_metrics`
    (`[metrics] auth`): `/metrics` without a key from loopback (`loopback`) or anywhere
    (`none`) acts as the `metrics` role; a key sent is checked all the same."""

    def __init__(
        self, app: ASGIApp, auth: Authenticator, open_metrics: str = "key",
        bypass: Callable[[str], bool] | None = None,
    ) -> None:
        self.app = app
        self.auth = auth
        self.open_metrics = open_metrics
        # Paths whose callers are authenticated further in (the dashboard's session cookie).
        self.bypass = bypass or (lambda path: False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS or self.bypass(scope["path"]):
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        client = client_of(conn)
        if self._open_scrape(scope, conn, client):
            scope.setdefault("state", {})["principal"] = Principal(
                Actor(ANONYMOUS, client=client), "metrics", None
            )
            await self.app(scope, receive, send)
            return
        try:
            principal = await self.auth.authenticate(conn.headers.get("authorization"), client)
        except Refused as refused:
            target = f"{scope['method']} {scope['path']}"
            response = await self.auth.refusal(refused, Actor(ANONYMOUS, client=client), target)
            await response(scope, receive, send)
            return
        except PodiumError as exc:  # the store is down: the store's status, not a 500
            await error_response(status_for(exc), exc.code, str(exc))(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


    def _open_scrape(self, scope: Scope, conn: HTTPConnection, client: str) -> bool:
        if self.open_metrics == "key" or scope["path"] != METRICS_PATH:
            return False
        if "authorization" in conn.headers:
            return False
        return self.open_metrics == "none" or is_loopback_address(client)


def is_loopback_address(client: str) -> bool:
    try:
        return ipaddress.ip_address(client).is_loopback
    except ValueError:
        return False  # "unknown", or a name: not provably local


async def _refused_in_route(request: Request, exc: Exception) -> JSONResponse:
    """A 403 from a route's `permit`: audited under the caller's own name."""
    assert isinstance(exc, Refused)
    auth: Authenticator = request.app.state.auth
    principal: Principal | None = getattr(request.state, "principal", None)
    actor = principal.actor if principal else Actor(ANONYMOUS, client=client_of(request))
    return await auth.refusal(exc, actor, f"{request.method} {request.url.path}")


def install_auth(app: FastAPI, auth: Authenticator) -> None:
    app.state.auth = auth
    app.add_exception_handler(Refused, _refused_in_route)
