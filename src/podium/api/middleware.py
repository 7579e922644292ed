"""Request hardening around the routes: Host names, Origin, content types, body size and JSON
shape, and the security headers every response carries.

Each is a small ASGI middleware; `create_app` stacks them in the order documented there.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from podium.api.auth import PUBLIC_PATHS
from podium.api.errors import error_response

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
API_CSP = "default-src 'none'; frame-ancestors 'none'"
FORM_TYPE = "application/x-www-form-urlencoded"
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def _media_type(headers: Headers) -> str:
    return headers.get("content-type", "").split(";")[0].strip().lower()


def is_json(media_type: str) -> bool:
    return media_type == "application/json" or media_type.endswith("+json")


def _has_body(headers: Headers) -> bool:
    return "transfer-encoding" in headers or headers.get("content-length", "0") not in ("", "0")


class SecurityHeaders:
    """Headers that keep browsers from sniffing, framing, leaking referrers or caching
    responses that needed a key; HSTS once the server speaks TLS."""

    def __init__(
        self, app: ASGIApp, hsts: bool = False, csp_for: Callable[[str], str | None] | None = None
    ) -> None:
        self.app = app
        self.headers: list[tuple[bytes, bytes]] = [
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
        ]
        if hsts:
            self.headers.append((b"strict-transport-security", b"max-age=31536000"))
        # The API's policy allows nothing; the dashboard's pages load their own files.
        self.csp_for = csp_for or (lambda path: None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        page_csp = self.csp_for(scope["path"])
        csp = (page_csp or API_CSP).encode()
        # A page's own forms must carry its Origin (`no-referrer` makes browsers send `null`).
        referrer = b"no-referrer" if page_csp is None else b"same-origin"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"cache-control" for name, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                headers.append((b"content-security-policy", csp))
                headers.append((b"referrer-policy", referrer))
                message = {**message, "headers": headers + self.headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def host_name(host_header: str) -> str:
    """The name in a Host header, without port; IPv6 literals lose their brackets."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


class HostCheck:
    """Only the Host names the server was started for: a page on another site whose name
    resolves to this server (DNS rebinding) gets 400; the probes are exempt. Starlette's
    TrustedHostMiddleware splits `[::1]:8080` at the first colon and answers in plain text;
    this does neither."""

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str]) -> None:
        self.app = app
        self.allowed = frozenset(
            host_name(h) if h.startswith("[") else h.lower() for h in allowed_hosts
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        checked = scope["type"] in ("http", "websocket") and scope["path"] not in PUBLIC_PATHS
        if checked and "*" not in self.allowed:
            host = host_name(Headers(scope=scope).get("host", ""))
            if host not in self.allowed:
                message = f"the Host header {host!r} is not one this server answers to"
                await error_response(400, "invalid_host", message)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class OriginCheck:
    """A state-changing request must come from no browser page (no Origin), this server's own
    pages, or a listed CORS origin; its body must be JSON. So a cross-site form, which can
    only send `text/plain` or form encodings, cannot cancel or signal a run. The dashboard's
    pages (`form_paths`) post forms: there a CSRF token in the form stands in for the JSON
    rule, and the Origin must still be this server's own."""

    def __init__(
        self, app: ASGIApp, cors_origins: Iterable[str],
        form_paths: Callable[[str], bool] | None = None,
    ) -> None:
        self.app = app
        self.origins = frozenset(o.rstrip("/").lower() for o in cors_origins)
        self.form_paths = form_paths or (lambda path: False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in STATE_CHANGING:
            refusal = self._refusal(scope, Headers(scope=scope))
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope, headers: Headers) -> Any:
        origin = headers.get("origin")
        if origin is not None and not self._allowed(origin, scope, headers):
            return error_response(
                403, "forbidden_origin", f"requests from the origin {origin!r} are not allowed"
            )
        media_type = _media_type(headers)
        if self.form_paths(scope["path"]):
            own = f"{scope.get('scheme', 'http')}://{headers.get('host', '')}".lower()
            if origin is not None and origin.rstrip("/").lower() != own:
                return error_response(
                    403, "forbidden_origin", f"requests from the origin {origin!r} are not allowed"
                )
            if media_type in (FORM_TYPE, "") or is_json(media_type):
                return None
        if (media_type or _has_body(headers)) and not is_json(media_type):
            return error_response(
                415, "unsupported_media_type",
                f"send the body as application/json (got {media_type or 'no content type'!r})",
            )
        return None

    def _allowed(self, origin: str, scope: Scope, headers: Headers) -> bool:
        origin = origin.rstrip("/").lower()
        own = f"{scope.get('scheme', 'http')}://{headers.get('host', '')}".lower()
        return origin == own or origin in self.origins


class BodyGuard:
    """Bodies over `max_bytes` get 413 before they are parsed (counted as they arrive, so a
    chunked body is cut off too); JSON deeper than `max_depth` or with a number that is not
    finite gets 422 in one line. The body read is then handed on to the route."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_depth: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        if scope["type"] == "http" and _has_nul(scope):
            await error_response(422, "invalid_request", NUL_MESSAGE)(scope, receive, send)
            return
        if scope["type"] != "http" or not _has_body(headers):
            await self.app(scope, receive, send)
            return
        body = await self._read(headers, receive)
        if body is None:
            await _too_large(self.max_bytes)(scope, receive, send)
            return
        problem = json_problem(body, self.max_depth) if is_json(_media_type(headers)) else None
        if problem is not None:
            await error_response(422, "invalid_request", problem)(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, headers: Headers, receive: Receive) -> bytes | None:
        """The whole body, or None once it proves larger than the limit."""
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away; the route will see the disconnect
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


# PostgreSQL text cannot hold NUL, nor UTF-8 a lone surrogate: refused here, as the client's
# mistake, rather than failing later in the store as the server's.
NUL_MESSAGE = "NUL characters are not accepted in paths, queries or JSON strings"


def _has_nul(scope: Scope) -> bool:
    query: bytes = scope.get("query_string", b"")
    return "\x00" in scope["path"] or b"%00" in query or b"\x00" in query


def _too_large(max_bytes: int) -> Any:
    message = f"the request body is larger than the limit of {max_bytes} bytes"
    response = error_response(413, "request_too_large", message)
    response.headers["Connection"] = "close"  # the rest of the body is not read
    return response


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()  # disconnects still arrive
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


def json_problem(body: bytes, max_depth: int) -> str | None:
    """Why this JSON body is refused, or None; malformed JSON is left to the route's own
    one-line message."""
    try:
        data = json.loads(body, parse_float=_finite, parse_constant=_no_constant)
    except json.JSONDecodeError:
        return None
    except RecursionError:
        return f"body: JSON nested deeper than {max_depth} levels"
    except ValueError as exc:  # a non-finite number, an int of thousands of digits, bad UTF-8
        return f"body: {exc}"
    return _shape_problem(data, max_depth)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def _no_constant(text: str) -> float:
    raise ValueError(f"{text} is not a JSON number")


def _shape_problem(data: Any, max_depth: int) -> str | None:
    """Too deep, or a string (value or key) that no store could keep."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if not _storable(value):
                return f"body: {NUL_MESSAGE}, nor unpaired surrogates"
        elif isinstance(value, dict | list):
            if depth > max_depth:
                return f"body: JSON nested deeper than {max_depth} levels"
            if isinstance(value, dict):
                stack.extend((key, depth) for key in value)
                stack.extend((child, depth + 1) for child in value.values())
            else:
                stack.extend((child, depth + 1) for child in value)
    return None


def _storable(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
