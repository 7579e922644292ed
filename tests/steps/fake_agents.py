"""A local model that calls tools, on the real OpenAI and Anthropic wires, on 127.0.0.1.

It follows a plan (the tool names asked for on each turn, all at once), then answers with
the tool results it read. It checks each conversation as the real APIs do (every tool call
answered by a result with its id, right after the call) and answers 400 otherwise; every
request is recorded. Turn n is the request whose conversation holds n-1 replies.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from serverlib import serving

OPENAI_KEY = "sk-test-agents-0123456789"
ANTHROPIC_KEY = "sk-ant-test-agents-0123456789"
MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-haiku-4-5"
HOLD_S = 30.0  # bound on holding a reply for a test (never reached when the test goes well)


class FakeAgentServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        plan: list[list[str]],
        *,
        forever: bool = False,
        usage: tuple[int, int] = (1000, 50),
        arguments: dict[str, dict[str, Any]] | None = None,
        hold_turn: int | None = None,
        fail_turns: set[int] | None = None,
    ) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.plan = plan
        self.forever = forever  # ask for the plan's last turn again and again
        self.usage = usage
        self.arguments = arguments or {}  # tool name -> the arguments asked with
        self.hold_turn = hold_turn  # the first request for this turn waits for `release`
        self.fail_turns = fail_turns or set()  # every request for these turns answers 500
        self.release = threading.Event()
        self.held = threading.Event()
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def turns(self) -> list[int]:
        with self.lock:
            return [r["turn"] for r in self.requests]

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client killed mid-request (crash tests) is expected


@contextmanager
def running(plan: list[list[str]], **options: Any) -> Iterator[FakeAgentServer]:
    server = FakeAgentServer(plan, **options)
    with serving(server, server.release.set):
        yield server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeAgentServer

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        anthropic = self.path.endswith("/v1/messages")
        replies = [m for m in body.get("messages", []) if m.get("role") == "assistant"]
        turn = len(replies) + 1
        problem = _anthropic_problem(body) if anthropic else _openai_problem(body)
        with self.server.lock:
            first = turn not in [r["turn"] for r in self.server.requests]
            self.server.requests.append({"turn": turn, "body": body, "problem": problem})
        if problem is not None:
            self._send(400, {"error": {"type": "invalid_request_error", "message": problem}})
            return
        if turn in self.server.fail_turns:
            self._send(500, {"error": {"type": "server_error", "message": "overloaded"}})
            return
        if first and turn == self.server.hold_turn:
            self.server.held.set()
            self.server.release.wait(HOLD_S)
        names = self._asked(turn)
        results = _results(body, anthropic)
        if _told_to_answer_again(body):  # a reply refused as the final answer: answer in JSON
            names, results = [], [json.dumps({"results": results, "retried": True})]
        if anthropic:
            self._send(200, _anthropic_reply(turn, names, results, self.server))
        else:
            self._send(200, _openai_reply(turn, names, results, self.server))

    def _asked(self, turn: int) -> list[str]:
        plan = self.server.plan
        if turn <= len(plan):
            return plan[turn - 1]
        return plan[-1] if self.server.forever and plan else []

    def _send(self, status: int, data: Any) -> None:
        raw = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _answer(results: list[str]) -> str:
    if len(results) == 1 and results[0].startswith('{"results"'):
        return results[0]
    return "answer from results: " + " | ".join(results)


def _told_to_answer_again(body: dict[str, Any]) -> bool:
    last = (body.get("messages") or [{}])[-1]
    return last.get("role") == "user" and str(last.get("content")).endswith("Answer again.")


def _openai_reply(
    turn: int, names: list[str], results: list[str], server: FakeAgentServer
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": None}
    if names:
        message["tool_calls"] = [
            {
                "id": f"call_{turn}_{i}",
                "type": "function",
                "function": {"name": n, "arguments": json.dumps(_args(server, n, turn, i))},
            }
            for i, n in enumerate(names)
        ]
    else:
        message["content"] = _answer(results)
    tokens_in, tokens_out = server.usage
    return {
        "id": f"chatcmpl-{turn}",
        "object": "chat.completion",
        "model": MODEL,
        "choices": [
            {"index": 0, "message": message, "finish_reason": "tool_calls" if names else "stop"}
        ],
        "usage": {
            "prompt_tokens": tokens_in,
            "completion_tokens": tokens_out,
            "total_tokens": tokens_in + tokens_out,
        },
    }


def _anthropic_reply(
    turn: int, names: list[str], results: list[str], server: FakeAgentServer
) -> dict[str, Any]:
    content: list[dict[str, Any]] = [
        {"type": "tool_use", "id": f"toolu_{turn}_{i}", "name": n,
         "input": _args(server, n, turn, i)}
        for i, n in enumerate(names)
    ]
    if not names:
        content = [{"type": "text", "text": _answer(results)}]
    tokens_in, tokens_out = server.usage
    return {
        "id": f"msg_{turn}",
        "type": "message",
        "role": "assistant",
        "model": ANTHROPIC_MODEL,
        "content": content,
        "stop_reason": "tool_use" if names else "end_turn",
        "usage": {"input_tokens": tokens_in, "output_tokens": tokens_out},
    }


def _args(server: FakeAgentServer, name: str, turn: int, index: int) -> dict[str, Any]:
    return server.arguments.get(name, {"q": f"q{turn}.{index}"})


def _results(body: dict[str, Any], anthropic: bool) -> list[str]:
    found = []
    for message in body.get("messages", []):
        if not anthropic and message.get("role") == "tool":
            found.append(str(message.get("content")))
        if anthropic and isinstance(message.get("content"), list):
            found += [
                str(b.get("content"))
                for b in message["content"]
                if b.get("type") == "tool_result"
            ]
    return found


def _openai_problem(body: dict[str, Any]) -> str | None:
    """Each assistant tool_calls message is followed by one `tool` message per call id."""
    messages = body.get("messages", [])
    for i, message in enumerate(messages):
        calls = message.get("tool_calls") if message.get("role") == "assistant" else None
        if not calls:
            continue
        ids = [c["id"] for c in calls]
        answered = [m.get("tool_call_id") for m in messages[i + 1 : i + 1 + len(ids)]]
        if sorted(answered) != sorted(ids) or any(
            m.get("role") != "tool" for m in messages[i + 1 : i + 1 + len(ids)]
        ):
            return f"tool_calls {ids} must be followed by tool messages for each id"
        if any(not isinstance(c["function"]["arguments"], str) for c in calls):
            return "function.arguments must be a string"
    return None


def _anthropic_problem(body: dict[str, Any]) -> str | None:
    """Each assistant tool_use is answered by a tool_result in the next (user) message."""
    messages = body.get("messages", [])
    for i, message in enumerate(messages):
        content = message.get("content")
        if message.get("role") != "assistant" or not isinstance(content, list):
            continue
        ids = [b["id"] for b in content if b.get("type") == "tool_use"]
        if not ids:
            continue
        following = messages[i + 1] if i + 1 < len(messages) else {}
        blocks = following.get("content") if following.get("role") == "user" else None
        answered = [
            b.get("tool_use_id")
            for b in blocks or []
            if isinstance(b, dict) and b.get("type") == "tool_result"
        ]
        if sorted(answered) != sorted(ids):
            return f"tool_use ids {ids} were not answered by tool_result blocks"
    for tool in body.get("tools", []):
        if "input_schema" not in tool:
            return "tools.input_schema: Field required"
    return None
