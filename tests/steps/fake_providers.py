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

from serverlib import serving

OPENAI_KEY = "sk-test-0123456789abcdef"
ANTHROPIC_KEY = "sk-ant-test-0123456789abcdef"
DEFAULT_REPLY = "Hello from the fake provider."
SLOW_S = 1.0

# fail-429: rate limited with retry-after: 1; fail-429-bare: the same without retry-after;
# fail-500 / fail-400: that status with the provider's error body; slow: answer after SLOW_S;
# cut: a stream that stops before its end; nostream: a whole JSON answer to a streamed
# request (servers that ignore `stream`); cached: part of the prompt read from (OpenAI,
# Anthropic) and written to (Anthropic) the prompt cache; late-usage: Anthropic's stream
# says input_tokens 0 in message_start and the real count in message_delta; invalid-once:
# a structured answer that breaks its schema until the conversation says so.
BEHAVIOURS = frozenset({
    "fail-429", "fail-429-bare", "fail-500", "fail-400", "slow", "cut", "nostream", "cached",
    "late-usage", "invalid-once",
})
CACHED_TOKENS = 2  # prompt tokens read from the cache under `cached`
CACHE_WRITTEN = 1  # and written to it (Anthropic)
FEEDBACK_MARK = "does not match the required JSON Schema"


def count_tokens(text: str) -> int:
    """The fake's tokenizer: one token per whitespace-separated word."""
    return len(text.split())


def reply_text(messages: list[dict[str, Any]]) -> str:
    """`say: X` as the last user message makes the reply exactly X (tool results, in a user
    turn of Anthropic's, do not count)."""
    last = next((m for m in reversed(messages)
                 if m.get("role") == "user" and isinstance(m.get("content"), str)), {})
    content = str(last.get("content", ""))
    return content[len("say: ") :] if content.startswith("say: ") else DEFAULT_REPLY


def sample(schema: Any) -> Any:
    """A value valid against a simple JSON Schema (what the fake model answers with)."""
    if not isinstance(schema, dict):
        return None
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return {name: sample(sub) for name, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [sample(schema.get("items") or {"type": "string"})]
    return {"string": "fake", "integer": 1, "number": 1.5, "boolean": True}.get(str(kind))


def breaking(schema: Any) -> Any:
    """A value that breaks the schema: an object whose first property has the wrong type."""
    value = sample(schema)
    if isinstance(value, dict) and value:
        first = next(iter(value))
        value[first] = 12345 if not isinstance(value[first], int) else "not a number"
        return value
    return {"unexpected": True}


def _told_schema(messages: list[dict[str, Any]]) -> bool:
    return any(FEEDBACK_MARK in str(m.get("content")) for m in messages)


def _has_tool_results(messages: list[dict[str, Any]]) -> bool:
    for m in messages:
        if m.get("role") == "tool":
            return True
        content = m.get("content")
        if isinstance(content, list) and any(
            isinstance(b, dict) and b.get("type") == "tool_result" for b in content
        ):
            return True
    return False


def tool_arguments(schema: Any, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """Arguments for a tool call: the last user text for string fields, samples otherwise."""
    last = next((m for m in reversed(messages)
                 if m.get("role") == "user" and isinstance(m.get("content"), str)), {})
    text = str(last.get("content", ""))
    properties = (schema or {}).get("properties") or {}
    return {
        name: text if sub.get("type") == "string" else sample(sub)
        for name, sub in properties.items()
    }


def pieces(text: str) -> list[str]:
    """The reply as streamed: word by word, each with its trailing space."""
    return re.findall(r"\S+\s*", text) or [""]


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.release = threading.Event()  # lets `late` webhooks answer

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
    with serving(server, server.release.set):
        yield server


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
    if str(body["model"]).startswith(("o1", "o3", "o4")) and "max_tokens" in body:
        message = ("Unsupported parameter: 'max_tokens' is not supported with this model."
                   " Use 'max_completion_tokens' instead.")
        h.send_json(400, _openai_error(400, message, "invalid_request_error",
                                       "unsupported_parameter"))
        return
    messages = body["messages"]
    text = reply_text(messages)
    calls = _openai_tool_calls(body, messages)
    schema = _mapping(_mapping(body.get("response_format")).get("json_schema")).get("schema")
    if schema is not None and not calls:
        bad = behaviour == "invalid-once" and not _told_schema(messages)
        text = json.dumps(breaking(schema) if bad else sample(schema))
    usage: dict[str, Any] = {
        "prompt_tokens": sum(count_tokens(str(m.get("content"))) for m in messages),
        "completion_tokens": count_tokens(text),
    }
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    if behaviour == "cached":
        usage["prompt_tokens_details"] = {"cached_tokens": CACHED_TOKENS, "audio_tokens": 0}
    model = f"{body['model']}-2024-07-18"  # the API answers with the dated snapshot
    if body.get("stream") and behaviour != "nostream":
        _openai_stream(h, model, text, usage, body, behaviour, calls)
    else:
        h.send_json(200, _openai_completion(model, text, usage, calls))


_OPENAI_FAILURES: dict[str, tuple[int, dict[str, Any], dict[str, str]]] = {
    "fail-429": (
        429,
        _openai_error(429, "Rate limit reached for requests", "requests", "rate_limit_exceeded"),
        {"retry-after": "1"},
    ),
    "fail-429-bare": (
        429,
        _openai_error(429, "Rate limit reached for requests", "requests", "rate_limit_exceeded"),
        {},
    ),
    "fail-500": (500, _openai_error(500, "The server had an error", "server_error", None), {}),
    "fail-400": (
        400,
        _openai_error(400, "max_tokens is too large", "invalid_request_error", None),
        {},
    ),
}


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _openai_tool_calls(body: dict[str, Any], messages: list[dict[str, Any]]) -> list[Any]:
    """Every offered tool called at once (parallel calls), until tool results came back."""
    tools = body.get("tools") or []
    if not tools or _has_tool_results(messages) or body.get("tool_choice") == "none":
        return []
    return [
        {"id": f"call_{i}", "type": "function", "function": {
            "name": t["function"]["name"],
            "arguments": json.dumps(tool_arguments(t["function"].get("parameters"), messages)),
        }}
        for i, t in enumerate(tools)
    ]


def _openai_completion(
    model: str, text: str, usage: dict[str, Any], calls: list[Any]
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    if calls:
        message.update(content=None, tool_calls=calls)
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "tool_calls" if calls else "stop",
            }
        ],
        "usage": usage,
        "system_fingerprint": "fp_fake",
    }


def _openai_stream(
    h: _Handler,
    model: str,
    text: str,
    usage: dict[str, Any],
    body: dict[str, Any],
    behaviour: str | None,
    calls: list[Any],
) -> None:
    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**base, "choices": [choice], "usage": None}

    base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": model}
    h.start_events()
    h.event(chunk({"role": "assistant", "content": "", "refusal": None}, None))
    for index, call in enumerate(calls):  # as the API does: id and name, then arguments
        head = {"index": index, "id": call["id"], "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""}}
        h.event(chunk({"tool_calls": [head]}, None))
        arguments = call["function"]["arguments"]
        for part in (arguments[: len(arguments) // 2], arguments[len(arguments) // 2 :]):
            h.event(chunk({"tool_calls": [{"index": index, "function": {"arguments": part}}]},
                          None))
    for piece in pieces(text) if not calls else []:
        h.event(chunk({"content": piece}, None))
    if behaviour == "cut":
        h.end_events()
        return
    h.event(chunk({}, "tool_calls" if calls else "stop"))
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
    "fail-429-bare": (
        429,
        _anthropic_error("rate_limit_error", "Number of requests has exceeded your rate limit"),
        {},
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
    blocks = _anthropic_blocks(body, messages, behaviour)
    text = "".join(b.get("text", "") for b in blocks) or json.dumps(
        [b.get("input") for b in blocks]
    )
    tokens_in = count_tokens(body.get("system", "")) + sum(
        count_tokens(str(m["content"])) for m in messages
    )
    usage = {"input_tokens": tokens_in, "output_tokens": count_tokens(text)}
    if behaviour == "cached":  # input_tokens leaves out what the cache read and wrote
        usage.update(
            input_tokens=tokens_in - CACHED_TOKENS - CACHE_WRITTEN,
            cache_read_input_tokens=CACHED_TOKENS,
            cache_creation_input_tokens=CACHE_WRITTEN,
        )
    stop = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
    if body.get("stream") and behaviour != "nostream":
        _anthropic_stream(h, body["model"], blocks, usage, stop, behaviour)
        return
    h.send_json(200, {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": blocks,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage,
    })


def _anthropic_blocks(
    body: dict[str, Any], messages: list[dict[str, Any]], behaviour: str | None
) -> list[dict[str, Any]]:
    """A forced tool (structured answer) is called; offered tools are all called at once
    until results came back; else the text reply."""
    tools = {t["name"]: t for t in body.get("tools") or []}
    choice = _mapping(body.get("tool_choice"))
    if choice.get("type") == "tool" and choice.get("name") in tools:
        schema = tools[choice["name"]]["input_schema"]
        bad = behaviour == "invalid-once" and not _told_schema(messages)
        return [{"type": "tool_use", "id": "toolu_answer", "name": choice["name"],
                 "input": breaking(schema) if bad else sample(schema)}]
    if tools and choice.get("type") != "none" and not _has_tool_results(messages):
        return [
            {"type": "tool_use", "id": f"toolu_{i}", "name": name,
             "input": tool_arguments(tool["input_schema"], messages)}
            for i, (name, tool) in enumerate(tools.items())
        ]
    return [{"type": "text", "text": reply_text(messages)}]


def _anthropic_stream(
    h: _Handler,
    model: str,
    blocks: list[dict[str, Any]],
    usage: dict[str, int],
    stop: str,
    behaviour: str | None,
) -> None:
    start_usage = {**usage, "output_tokens": 1}
    if behaviour == "late-usage":  # some compatible servers count the input at the end
        start_usage = {"input_tokens": 0, "output_tokens": 0}
    message = {
        "id": "msg_fake", "type": "message", "role": "assistant", "content": [], "model": model,
        "stop_reason": None, "stop_sequence": None, "usage": start_usage,
    }
    h.start_events()
    h.event({"type": "message_start", "message": message}, "message_start")
    h.event({"type": "ping"}, "ping")
    for index, block in enumerate(blocks):
        _anthropic_block_events(h, index, block)
        if behaviour == "cut":
            h.end_events()
            return
    # Cumulative: the real API repeats only output_tokens; `late-usage` sends them all here.
    delta_usage = usage if behaviour == "late-usage" else {"output_tokens": usage["output_tokens"]}
    h.event({
        "type": "message_delta",
        "delta": {"stop_reason": stop, "stop_sequence": None},
        "usage": delta_usage,
    }, "message_delta")
    h.event({"type": "message_stop"}, "message_stop")
    h.end_events()


def _anthropic_block_events(h: _Handler, index: int, block: dict[str, Any]) -> None:
    if block["type"] == "text":
        empty: dict[str, Any] = {"type": "text", "text": ""}
        h.event({"type": "content_block_start", "index": index, "content_block": empty},
                "content_block_start")
        for piece in pieces(block["text"]):
            h.event({"type": "content_block_delta", "index": index,
                     "delta": {"type": "text_delta", "text": piece}}, "content_block_delta")
    else:
        head = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
        h.event({"type": "content_block_start", "index": index, "content_block": head},
                "content_block_start")
        arguments = json.dumps(block["input"])
        for part in (arguments[: len(arguments) // 2], arguments[len(arguments) // 2 :]):
            h.event({"type": "content_block_delta", "index": index,
                     "delta": {"type": "input_json_delta", "partial_json": part}},
                    "content_block_delta")
    h.event({"type": "content_block_stop", "index": index}, "content_block_stop")


# -- n8n: /webhook/<name> ------------------------------------------------------------------------


def _webhook(
    h: _Handler, path: str, headers: dict[str, str], body: Any, behaviour: str | None
) -> None:
    """respond: a "Respond to Webhook" JSON reply; fire, empty: 200 and no body (as n8n
    answers when its workflow fails before the Respond to Webhook node); fail: n8n's 500;
    late: the answer only once the test releases it; drop: the connection closes unanswered
    (n8n restarted mid-execution). `webhook-test/` paths behave as `webhook/` ones."""
    name = path.removeprefix("/webhook/")
    if name == "respond":
        h.send_json(200, {"received": body, "method": h.command})
    elif name in ("fire", "empty"):
        h.send_raw(200, "", b"")
    elif name == "late":
        h.server.release.wait(30)
        h.send_json(200, {"done": True})
    elif name == "drop":
        h.close_connection = True
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
