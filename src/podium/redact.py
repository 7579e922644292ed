"""Masks secret values (`***`) in text, JSON values, encoded JSON and log events; and URLs
reduced to what may be shown. A leaf module: it imports nothing of podium, so any layer may use it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, urlencode, urlsplit, urlunsplit

MASK = "***"
MIN_SECRET_CHARS = 4  # shorter values would mask ordinary text everywhere


class Redactor:
    """Replaces every known secret value, longest first, by `***`. False while it knows none,
    so a caller can skip the work: `if redactor: text = redactor.text(text)`."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._bytes_pattern: re.Pattern[bytes] | None = None
        for value in values:
            self.add(value)

    def add(self, value: str) -> None:
        """Masks `value` from now on (ignored when shorter than MIN_SECRET_CHARS)."""
        if not isinstance(value, str) or len(value) < MIN_SECRET_CHARS or value in self._values:
            return
        self._values.add(value)
        # A value may appear raw, JSON-escaped (a JSON body quoted inside text: quotes,
        # backslashes, non-ASCII) or percent-encoded (a URL path or query).
        forms = sorted({f for v in self._values for f in _forms(v)}, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(f) for f in forms))
        encoded = sorted({f.encode() for f in forms}, key=len, reverse=True)
        self._bytes_pattern = re.compile(b"|".join(re.escape(f) for f in encoded))

    def __bool__(self) -> bool:
        return self._pattern is not None

    def text(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(MASK, text)

    def value(self, obj: Any) -> Any:
        """`obj` with secrets masked in every string, keys included, through dicts and lists;
        the very same object when nothing was masked."""
        if self._pattern is None:
            return obj
        return self._value(obj, self._pattern)

    def _value(self, obj: Any, pattern: re.Pattern[str]) -> Any:
        if isinstance(obj, str):
            return pattern.sub(MASK, obj) if pattern.search(obj) else obj
        if isinstance(obj, dict):
            items = [(self._value(k, pattern), self._value(v, pattern)) for k, v in obj.items()]
            pairs = zip(items, obj.items(), strict=True)
            if all(k is k0 and v is v0 for (k, v), (k0, v0) in pairs):
                return obj
            return dict(items)
        if isinstance(obj, list | tuple):
            masked = [self._value(v, pattern) for v in obj]
            if all(m is v for m, v in zip(masked, obj, strict=True)):
                return obj
            return type(obj)(masked) if isinstance(obj, tuple) else masked
        return obj

    def blob(self, data: bytes) -> bytes:
        """Encoded JSON (or any UTF-8 bytes) with each secret masked, raw or JSON-escaped."""
        if self._bytes_pattern is None:
            return data
        return self._bytes_pattern.sub(MASK.encode(), data)


def _forms(value: str) -> set[str]:
    # JSON escapes `"`, `\\` and control characters; json.dumps also non-ASCII by default
    # (orjson does not).
    # A JSON body echoed inside a JSON reply is escaped twice.
    escaped = json.dumps(value)[1:-1]
    return {
        value, escaped, json.dumps(value, ensure_ascii=False)[1:-1], json.dumps(escaped)[1:-1],
        quote(value, safe=""), quote(value), quote_plus(value),
    }


def safe_url(url: str) -> str:
    """The URL as messages may show it: scheme, host, port and path; no credentials, no query."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<invalid url>"
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def redact_url_password(url: str) -> str:
    """The URL with its password, in the user part or a `password=` query parameter, replaced
    by `***`; the rest kept: a store or bus URL's database and options help the reader."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    netloc = parts.netloc
    userinfo, at, hostinfo = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.partition(':')[0]}:{MASK}@{hostinfo}"
    query = parts.query
    if "password=" in query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, MASK if k == "password" else v) for k, v in pairs], safe="*")
    if netloc == parts.netloc and query == parts.query:
        return url  # nothing to mask: as given (urlunsplit would drop `sqlite:///`'s slashes)
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def structlog_processor(redactor: Redactor) -> Callable[[Any, str, MutableMapping[str, Any]], Any]:
    """A structlog processor that masks secrets in every value of the event dict."""

    def mask(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> Any:
        if redactor:
            for key, value in event.items():
                event[key] = redactor.value(value)
        return event

    return mask
