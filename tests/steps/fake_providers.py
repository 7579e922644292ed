"""Local stand-ins for the OpenAI and Anthropic APIs and for n8n webhooks, on 127.0.0.1.

They speak the real wire formats (JSON and server-sent events, chunked); a first path segment
scripts a behaviour (`/fail-429/v1/messages`), and every request is recorded for assertions.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

OPENAI_KEY = "sk-test-0123456789abcdef"
ANTHROPIC_KEY = "sk-ant-test-0123456789abcdef"
DEFAULT_REPLY = "Hello from the fake provider."
SLOW_S = 1.0

# fail-429: rate limited with retry-after: 1; fail-500 / fail-400: that status with the
# provider's error body; slow: answer after SLOW_S; cut: a stream that stops before its end.
BEHAVIOURS = frozenset({"fail-429", "fail-500", "fail-400", "slow", "cut"})


def count_tokens(text: str) -> int:
    """The fake's tokenizer: one token per whitespace-separated word."""
    return len(text.split())


def reply_text(messages: list[dict[str, Any]]) -> str:
    """`say: X` as the last user message makes the reply exactly X."""
    last = next((m for m in reversed(messages) if m.get("role") == "user"), {})
    content = str(last.get("content", ""))
    return content[len("say: ") :] if content.startswith("say: ") else DEFAULT_REPLY


def pieces(text: str) -> list[str]:
    """The reply as streamed: word by word, each with its trailing space."""
    return re.findall(r"\S+\s*", text) or [""]


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def record(self, request: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (timeout tests) is expected, not a failure


@contextmanager
def running() -> Iterator[FakeServer]:
    server = FakeServer()
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # chunked streams need it
    server: FakeServer

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        segments = parts.path.split("/")
        behaviour = segments[1] if len(segments) > 1 and segments[1] in BEHAVIOURS else None
        path = "/" + "/".join(segments[2:]) if behaviour else parts.path
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.server.record(
            {"method": self.command, "path": path, "headers": headers, "body": body, "query": query}
        )
        if behaviour == "slow":
            time.sleep(SLOW_S)
        route = _ROUTES.get(path) or (_webhook if path.startswith("/webhook/") else None)
        if route is None:
            self.send_json(404, _openai_error(404, "not found", "invalid_request_error", None))
        else:
            route(self, path, headers, body or query, behaviour)

    do_GET = do_POST

    # -- framing --------------------------------------------------------------------------

    def send_json(self, status: int, data: Any, extra: dict[str, str] | None = None) -> None:
        self.send_raw(status, "application/json", json.dumps(data).encode(), extra)

    def send_raw(
        self, status: int, content_type: str, data: bytes, extra: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        if data or content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def start_events(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def event(self, data: Any, name: str | None = None) -> None:
        """One SSE event (`event:` line only when named, as Anthropic does), in one chunk."""
        text = (f"event: {name}\n" if name else "") + f"data: {_as_data(data)}\n\n"
        raw = text.encode()
        self.wfile.write(f"{len(raw):X}\r\n".encode() + raw + b"\r\n")
        self.wfile.flush()

    def end_events(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean


def _as_data(data: Any) -> str:
    return data if isinstance(data, str) else json.dumps(data)


# -- OpenAI: POST /v1/chat/completions ---------------------------------------------------------


def _openai_error(status: int, message: str, kind: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _openai(
    h: _Handler, path: str, headers: dict[str, str], body: Any, behaviour: str | None
) -> None:
    key = headers.get("authorization", "").removeprefix("Bearer ")
    if key != OPENAI_KEY:
        # As the real API does: the refused key is quoted back in the message.
        message = f"Incorrect API key provided: {key}. You can find your API key at ..."
        h.send_json(401, _openai_error(401, message, "invalid_request_error", "invalid_api_key"))
        return
    failure = _OPENAI_FAILURES.get(behaviour or "")
    if failure is not None:
        status, error, extra = failure
        h.send_json(status, error, extra)
        return
    messages = body["messages"]
    text = reply_text(messages)
    usage = {
        "prompt_tokens": sum(count_tokens(str(m["content"])) for m in messages),
        "completion_tokens": count_tokens(text),
    }
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    model = f"{body['model']}-2024-07-18"  # the API answers with the dated snapshot
    if body.get("stream"):
        _openai_stream(h, model, text, usage, body, behaviour)
    else:
        h.send_json(200, _openai_completion(model, text, usage))


_OPENAI_FAILURES: dict[str, tuple[int, dict[str, Any], dict[str, str]]] = {
    "fail-429": (
        429,
        _openai_error(429, "Rate limit reached for requests", "requests", "rate_limit_exceeded"),
        {"retry-after": "1"},
    ),
    "fail-500": (500, _openai_error(500, "The server had an error", "server_error", None), {}),
    "fail-400": (
        400,
        _openai_error(400, "max_tokens is too large", "invalid_request_error", None),
        {},
    ),
}


def _openai_completion(model: str, text: str, usage: dict[str, int]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": usage,
        "system_fingerprint": "fp_fake",
    }


def _openai_stream(
    h: _Handler,
    model: str,
    text: str,
    usage: dict[str, int],
    body: dict[str, Any],
    behaviour: str | None,
) -> None:
    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**base, "choices": [choice], "usage": None}

    base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": model}
    h.start_events()
    h.event(chunk({"role": "assistant", "content": "", "refusal": None}, None))
    for piece in pieces(text):
        h.event(chunk({"content": piece}, None))
    if behaviour == "cut":
        h.end_events()
        return
    h.event(chunk({}, "stop"))
    if body.get("stream_options", {}).get("include_usage"):
        h.event({**base, "choices": [], "usage": usage})
    h.event("[DONE]")
    h.end_events()


# -- Anthropic: POST /v1/messages --------------------------------------------------------------


def _anthropic_error(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


_ANTHROPIC_FAILURES: dict[str, tuple[int, dict[str, Any], dict[str, str]]] = {
    "fail-429": (
        429,
        _anthropic_error("rate_limit_error", "Number of requests has exceeded your rate limit"),
        {"retry-after": "1"},
    ),
    "fail-500": (500, _anthropic_error("api_error", "Internal server error"), {}),
    "fail-400": (400, _anthropic_error("invalid_request_error", "max_tokens: too large"), {}),
}


def _anthropic(
    h: _Handler, path: str, headers: dict[str, str], body: Any, behaviour: str | None
) -> None:
    if headers.get("x-api-key") != ANTHROPIC_KEY:
        h.send_json(401, _anthropic_error("authentication_error", "invalid x-api-key"))
        return
    if headers.get("anthropic-version") != "2023-06-01":
        h.send_json(400, _anthropic_error("invalid_request_error", "anthropic-version missing"))
        return
    failure = _ANTHROPIC_FAILURES.get(behaviour or "")
    if failure is not None:
        status, error, extra = failure
        h.send_json(status, error, extra)
        return
    messages = body["messages"]
    text = reply_text(messages)
    tokens_in = count_tokens(body.get("system", "")) + sum(
        count_tokens(str(m["content"])) for m in messages
    )
    if body.get("stream"):
        _anthropic_stream(h, body["model"], text, tokens_in, behaviour)
        return
    h.send_json(200, {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": tokens_in, "output_tokens": count_tokens(text)},
    })


def _anthropic_stream(
    h: _Handler, model: str, text: str, tokens_in: int, behaviour: str | None
) -> None:
    message = {
        "id": "msg_fake", "type": "message", "role": "assistant", "content": [], "model": model,
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": tokens_in, "output_tokens": 1},
    }
    h.start_events()
    h.event({"type": "message_start", "message": message}, "message_start")
    empty_block = {"type": "text", "text": ""}
    start = {"type": "content_block_start", "index": 0, "content_block": empty_block}
    h.event(start, "content_block_start")
    h.event({"type": "ping"}, "ping")
    for piece in pieces(text):
        delta = {"type": "content_block_delta", "index": 0,
                 "delta": {"type": "text_delta", "text": piece}}
        h.event(delta, "content_block_delta")
    if behaviour == "cut":
        h.end_events()
        return
    h.event({"type": "content_block_stop", "index": 0}, "content_block_stop")
    h.event({
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": count_tokens(text)},
    }, "message_delta")
    h.event({"type": "message_stop"}, "message_stop")
    h.end_events()


# -- n8n: /webhook/<name> ------------------------------------------------------------------------


def _webhook(
    h: _Handler, path: str, headers: dict[str, str], body: Any, behaviour: str | None
) -> None:
    """respond: a "Respond to Webhook" JSON reply; fire: 200 and no body; fail: n8n's 500."""
    name = path.removeprefix("/webhook/")
    if name == "respond":
        h.send_json(200, {"received": body, "method": h.command})
    elif name == "fire":
        h.send_raw(200, "", b"")
    elif name == "fail":
        h.send_json(500, {"code": 0, "message": "There was a problem executing the workflow"})
    else:
        message = f'The requested webhook "{name}" is not registered.'
        h.send_json(404, {"code": 404, "message": message})


_Route = Callable[[_Handler, str, dict[str, str], Any, "str | None"], None]
_ROUTES: dict[str, _Route] = {
    "/v1/chat/completions": _openai,
    "/v1/messages": _anthropic,
}
