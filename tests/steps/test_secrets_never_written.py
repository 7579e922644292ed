"""The secrets scan: workflows that put secrets in headers, URL paths, bodies and LLM keys, and
servers that echo them back (in replies and in error bodies); afterwards no byte that podium
wrote holds a secret value: the store's file or tables, events, logs, CLI and API output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fake_providers import OPENAI_KEY, running

from podium.api.app import ApiOptions, create_app
from podium.bus import open_bus
from podium.engine.engine import Engine
from podium.settings import Settings
from podium.store import open_store

TOKEN = "tok-5ecr3t-Zq81xv"
QUOTED = 'pa"ss\\w0rd-77'  # needs JSON escaping: the stored form differs from the raw one
OPENAI = OPENAI_KEY  # the key the fake provider accepts
SECRETS = (TOKEN, QUOTED, OPENAI)
ROOT = Path(__file__).resolve().parents[2]


class _Echo(BaseHTTPRequestHandler):
    """Answers with everything it was sent, as careless servers do: 400 on a path holding
    `fail`, and for `/v1/chat/completions` a chat reply quoting the Authorization header."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        seen = {
            "path": self.path,
            "authorization": self.headers.get("authorization"),
            "body": self.rfile.read(length).decode() if length else None,
        }
        status = 400 if "fail" in self.path else 200
        if self.path.endswith("/chat/completions") and status == 200:
            seen = {
                "id": "x", "object": "chat.completion", "model": "gpt-4o-mini",
                "choices": [{"index": 0, "finish_reason": "stop", "message": {
                    "role": "assistant", "content": f"you sent {seen['authorization']}"}}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
            }
        data = json.dumps(seen).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def echo_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def workflow(echo: str, fake_llm: str) -> dict[str, Any]:
    auth = {"Authorization": "Bearer {{ secrets.TOKEN }}"}
    once = {"attempts": 1}
    return {
        "name": "secret-scan",
        "steps": {
            "get": {"kind": "http", "method": "GET", "headers": auth,
                    "url": echo + "/ok/{{ secrets.TOKEN }}"},
            "post": {"kind": "http", "method": "POST", "headers": auth,
                     "url": echo + "/ok", "body": {"password": "{{ secrets.QUOTED }}"}},
            "refused": {"kind": "http", "method": "POST", "headers": auth, "optional": True,
                        "url": echo + "/fail/{{ secrets.TOKEN }}", "retry": once,
                        "body": {"password": "{{ secrets.QUOTED }}"}},
            "chat": {"kind": "llm", "model": "gpt-4o-mini", "prompt": "say: fine",
                     "base_url": fake_llm + "/v1"},
            "echoing_chat": {"kind": "llm", "model": "gpt-4o-mini", "prompt": "hi",
                             "base_url": echo + "/v1"},
            "chat_refused": {"kind": "llm", "model": "gpt-4o-mini", "prompt": "hi",
                             "optional": True, "retry": once, "base_url": echo + "/fail/v1"},
            "shout": {"kind": "http", "method": "POST", "url": echo + "/fail",
                      "optional": True, "retry": once,
                      "fallback": {"kind": "sim", "output": {"said": "{{ secrets.TOKEN }}"}},
                      "body": {"t": "{{ secrets.TOKEN }}"}},
        },
    }


def leaks(text: str | bytes) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    found = []
    for secret in SECRETS:
        escaped = json.dumps(secret)[1:-1]
        forms = {secret.encode(), escaped.encode(), json.dumps(escaped)[1:-1].encode()}
        found += [secret for form in forms if form in data]
    return found


def _cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "podium.cli.app", "-v", *args], env=env, cwd=cwd,
        capture_output=True, text=True, timeout=120, check=False,
    )


def _store_bytes(url: str) -> bytes:
    """Every byte of the store: the SQLite files, or every table's rows as text."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    base, schema = url.split("?schema=")
    chunks = []
    with psycopg.connect(base, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
        ).fetchall()
        for (table,) in tables:
            for row in conn.execute(f'SELECT * FROM "{schema}"."{table}"').fetchall():
                chunks.append(repr(row).encode())
                chunks += [bytes(v) for v in row if isinstance(v, bytes | memoryview)]
    return b"\n".join(chunks)


async def _api_output(url: str, run_id: str) -> str:
    """What the API shows of the run to an admin: summary, events, the event stream, audit."""
    async with open_store(url) as store, open_bus("memory://") as bus, \
            Engine(store, bus, Settings()) as engine:
        app = create_app(engine, options=ApiOptions(auth=False))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            paths = [f"/v1/runs/{run_id}", f"/v1/runs/{run_id}/events", "/v1/audit",
                     f"/v1/events?run_id={run_id}", "/v1/runs"]
            bodies = []
            for path in paths:
                response = await client.get(path)
                assert response.status_code == 200, (path, response.text)
                bodies.append(response.text)
    return "\n".join(bodies)


async def test_no_secret_value_is_written_anywhere(store_url: str, tmp_path: Path) -> None:
    config = tmp_path / "podium.toml"
    config.write_text('[secrets]\nallow = ["TOKEN", "QUOTED", "OPENAI_API_KEY"]\n')
    env = {**os.environ, "TOKEN": TOKEN, "QUOTED": QUOTED, "OPENAI_API_KEY": OPENAI,
           "PODIUM_CONFIG": str(config), "PODIUM_STORE": store_url,
           "PYTHONPATH": str(ROOT / "src")}
    with echo_server() as echo, running() as fake:
        (tmp_path / "wf.json").write_text(json.dumps(workflow(echo, fake.url)))
        run = _cli("run", "wf.json", "--json", env=env, cwd=tmp_path)
        sent = [r["headers"].get("authorization") for r in fake.requests]
    assert run.returncode == 0, run.stderr  # degraded: the optional failures were tolerated
    summary = json.loads(run.stdout)
    assert sent == [f"Bearer {OPENAI}"]  # the secrets did reach where they were meant to go
    steps = summary["steps"]
    assert steps["get"]["output"]["authorization"] == "Bearer ***"
    assert steps["get"]["output"]["path"] == "/ok/***"
    assert json.loads(steps["post"]["output"]["body"]) == {"password": "***"}
    assert "returned 400" in steps["refused"]["error"] and "***" in steps["refused"]["error"]
    assert steps["shout"]["output"] == {"said": "***"}
    assert "***" in str(steps["echoing_chat"]["output"])

    outputs = [run.stdout, run.stderr]
    for args in (["events", summary["run_id"], "--json"], ["status", summary["run_id"],
                 "--json", "--events"], ["audit", "list", "--json"], ["runs", "--json"],
                 ["dlq", "list", "--json"]):
        shown = _cli(*args, env=env, cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr
        outputs += [shown.stdout, shown.stderr]
    outputs.append(await _api_output(store_url, summary["run_id"]))

    assert leaks("\n".join(outputs)) == []
    assert leaks(_store_bytes(store_url)) == []


@pytest.mark.parametrize("value", SECRETS)
def test_the_scan_would_see_each_secret_in_either_form(value: str) -> None:
    """The scan itself can fail: a raw or JSON-escaped secret is found."""
    assert leaks(f"x {value} y") and leaks(json.dumps({"v": value}))

