"""The CLI as a client: with PODIUM_URL and PODIUM_API_KEY, commands act through `podium serve`.

The CLI's own store URL points nowhere, so any command that opened the store would fail.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_support import CLI, Result, check_output, cli_env

from podium.api.keys import new_key
from podium.check import parse_workflow
from podium.engine.runtime import Compiled
from podium.events import SYSTEM_ACTOR, audit_event
from podium.model.status import RUN_FINAL
from podium.store import open_store
from podium.store.records import RegisteredWorkflow

DEADLINE_S = 30.0
BLOCKER = Path(__file__)  # a file, so no directory can be made under it: the store cannot open
NOWHERE = f"sqlite:///{BLOCKER}/dir/podium.db"

HELLO: dict[str, Any] = {
    "name": "hello",
    "inputs": {"times": {"type": "integer", "required": True}},
    "steps": {"greet": {"kind": "sim", "output": {"said": "{{ inputs.times }}"}}},
}
APPROVAL: dict[str, Any] = {
    "name": "approval",
    "steps": {"approve": {"kind": "wait", "signal": "approval", "timeout": "5m"}},
}
FAILING: dict[str, Any] = {
    "name": "failing",
    "steps": {"boom": {"kind": "sim", "fail_rate": 1.0, "retry": {"attempts": 1}}},
}


@dataclass(frozen=True)
class Server:
    url: str
    admin: str
    viewer: str

    def cli(self, *args: str, key: str | None = None, url: str | None = None) -> Result:
        env = {**cli_env(), "PODIUM_STORE": NOWHERE, "PODIUM_URL": url or self.url,
               "PODIUM_API_KEY": key or self.admin}
        proc = subprocess.run([*CLI, *args], capture_output=True, text=True, env=env,
                              timeout=60, stdin=subprocess.DEVNULL)
        check_output(proc.stdout, proc.stderr)
        for secret in (self.admin, self.viewer):
            assert secret not in proc.stdout + proc.stderr
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10,
                            headers={"Authorization": f"Bearer {self.admin}"})

    def submit(self, workflow: str, inputs: dict[str, Any] | None = None) -> str:
        with self.api() as api:
            response = api.post("/v1/runs", json={"workflow_name": workflow,
                                                  "inputs": inputs or {}})
        assert response.status_code == 201, response.text
        return str(response.json()["run_id"])

    def until(self, run_id: str, done: Any) -> dict[str, Any]:
        """Polls the run's summary until `done(summary)`, within a deadline."""
        deadline = time.monotonic() + DEADLINE_S
        with self.api() as api:
            while time.monotonic() < deadline:
                summary: dict[str, Any] = api.get(f"/v1/runs/{run_id}").json()
                if done(summary):
                    return summary
                time.sleep(0.05)
        raise AssertionError(f"run {run_id} never got there")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def prepare(store_url: str) -> tuple[str, str]:
    """Two keys (admin, viewer) and the registered workflows, straight into the store."""
    async with open_store(store_url) as store:
        tokens = []
        for role in ("admin", "viewer"):
            token, record = new_key(role, role, None, None, time.time(), "test")
            await store.add_key(record, audit_event(SYSTEM_ACTOR, "key.create", record.key_id))
            tokens.append(token)
        for definition in (HELLO, APPROVAL, FAILING):
            compiled = Compiled.of(parse_workflow(definition, "workflow"))
            entry = RegisteredWorkflow(compiled.workflow.name, "1", compiled.digest,
                                       time.time(), "test")
            await store.register_workflow(
                entry, compiled.body, audit_event(SYSTEM_ACTOR, "workflow.register", entry.name)
            )
    return tokens[0], tokens[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("served")
    store_url = f"sqlite:///{folder / 'podium.db'}"
    admin, viewer = asyncio.run(prepare(store_url))
    port = free_port()
    env = {**cli_env(), "PODIUM_POLL_INTERVAL_S": "0.05"}
    proc = subprocess.Popen(
        [*CLI, "serve", "--host", "127.0.0.1", "--port", str(port), "--store", store_url],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=folder,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield Server(url, admin, viewer)
    finally:
        proc.terminate()
        proc.communicate(timeout=60)


def _wait_healthy(url: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            why = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"podium serve exited: {why}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError("podium serve never answered /healthz")


def test_run_detach_by_name_prints_the_id_and_the_server_runs_it(server: Server) -> None:
    result = server.cli("run", "hello", "-i", "times=1", "--detach")
    assert result.code == 0, result.stderr
    run_id = result.stdout.strip()
    assert f"run {run_id} queued; the server at " in result.stderr
    for _ in range(200):  # the server runs it on its own: its status reaches the end
        status = server.cli("status", run_id, "--json")
        if status.code == 0 and status.json()["status"] == "succeeded":
            return
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} never succeeded on the server")


def test_the_store_url_given_to_the_cli_really_cannot_be_opened() -> None:
    env = {**cli_env(), "PODIUM_STORE": NOWHERE}
    proc = subprocess.run([*CLI, "runs"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode != 0


def test_run_by_name_waits_and_prints_the_summary_as_a_local_run(server: Server) -> None:
    result = server.cli("run", "hello", "-i", "times=3", "--json")
    assert result.code == 0, result.stderr
    assert f"run {result.json()['run_id']} queued: hello on " in result.stderr
    summary = result.json()
    assert summary["status"] == "succeeded" and summary["workflow"] == "hello"
    assert summary["outputs"]["greet"] == {"said": 3}  # `-i` parsed by the declared type

    runs = server.cli("runs", "--json", "--workflow", "hello")
    assert runs.code == 0, runs.stderr
    [row] = [r for r in runs.json() if r["run_id"] == summary["run_id"]]
    assert set(row) == {"run_id", "workflow", "workflow_version", "status", "priority",
                        "created_at", "started_at", "finished_at", "duration_s", "error",
                        "parent_run_id"}
    status = server.cli("status", summary["run_id"], "--json")
    assert status.code == 0 and status.json() == summary

    events = server.cli("events", summary["run_id"], "--json")
    assert events.code == 0 and events.json()[-1]["event_type"] == "run.completed"


def test_a_bad_input_or_an_unknown_workflow_or_run_exits_as_locally(server: Server) -> None:
    bad = server.cli("run", "hello", "-i", "times=many")
    assert bad.code == 2 and bad.stderr.startswith("error: ") and "times" in bad.stderr
    unknown = server.cli("run", "nobody")
    assert unknown.code == 1 and "nobody" in unknown.stderr
    missing = server.cli("status", "no-such-run", "--json")
    assert missing.code == 1 and missing.stdout == ""
    assert len(missing.stderr.strip().splitlines()) == 1


def test_signal_and_cancel_reach_waiting_runs_through_the_api(server: Server) -> None:
    signalled = server.submit("approval")
    server.until(signalled, lambda s: s["steps"]["approve"]["status"] == "running")
    sent = server.cli("signal", signalled, "approval", '{"ok": true}')
    assert sent.code == 0, sent.stderr
    done = server.until(signalled, lambda s: s["status"] in RUN_FINAL)
    assert done["status"] == "succeeded" and done["outputs"]["approve"] == {"ok": True}

    cancelled = server.submit("approval")
    server.until(cancelled, lambda s: s["steps"]["approve"]["status"] == "running")
    result = server.cli("cancel", cancelled)
    assert result.code == 0, result.stderr
    assert result.stdout.strip() == f"run {cancelled}: cancelled"
    again = server.cli("cancel", cancelled)
    assert again.code == 1 and "already ended" in again.stderr


def test_a_viewer_key_is_refused_a_cancel_in_one_clear_line(server: Server) -> None:
    run_id = server.submit("approval")
    result = server.cli("cancel", run_id, key=server.viewer)
    assert result.code == 1
    assert result.stderr.startswith("error: the server refused the key: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert server.cli("status", run_id, "--json", key=server.viewer).json()["status"] != (
        "cancelled"
    )
    server.cli("cancel", run_id)


def test_the_dlq_is_listed_shown_replayed_and_purged_through_the_api(server: Server) -> None:
    failed = server.cli("run", "failing", "--json")
    assert failed.code == 1 and failed.json()["status"] == "failed"
    run_id = failed.json()["run_id"]

    listed = server.cli("dlq", "list", "--json")
    assert listed.code == 0 and run_id in [e["run_id"] for e in listed.json()]
    shown = server.cli("dlq", "show", run_id, "--json")
    assert shown.code == 0 and shown.json()["failed_steps"] == ["boom"]
    assert shown.json()["run"]["run_id"] == run_id
    replayed = server.cli("dlq", "replay", run_id, "--json")
    assert replayed.code == 1 and replayed.json()["run_id"] == run_id
    purged = server.cli("dlq", "purge", "--yes")
    assert purged.code == 0 and purged.stdout.startswith("purged ")
    assert server.cli("dlq", "list", "--json").json() == []


def test_pause_resume_and_circuits_act_through_the_api(server: Server) -> None:
    paused = server.cli("pause", "workflow", "hello")
    assert paused.code == 0 and "workflow hello paused" in paused.stderr
    with server.api() as api:
        assert {"scope": "workflow", "name": "hello"} in api.get("/v1/pauses").json()["pauses"]
    resumed = server.cli("resume", "workflow", "hello")
    assert resumed.code == 0 and "resumed" in resumed.stderr

    key = "http:api.example.com/v1"
    opened = server.cli("circuits", "open", key, "--json")
    assert opened.code == 0, opened.stderr
    assert opened.json()["circuit"]["forced"] is True and opened.json()["changed"] is True
    listed = server.cli("circuits", "--json")
    assert key in [c["key"] for c in listed.json()["circuits"]]
    closed = server.cli("circuits", "close", key, "--json")
    assert closed.code == 0 and closed.json()["circuit"]["state"] == "closed"
    never = server.cli("circuits", "close", "llm:never-seen", "--json")
    assert never.code == 0 and never.json() == {"circuit": None, "changed": False}


def test_queue_spend_schedules_and_budgets_print_their_documents(server: Server) -> None:
    queue = server.cli("queue", "--json")
    assert queue.code == 0
    assert [r["priority"] for r in queue.json()["priorities"]] == ["critical", "high", "normal",
                                                                   "low"]
    spend = server.cli("spend", "--json", "--by", "workflow", "--since", "1h")
    assert spend.code == 0 and spend.json()["by"] == "workflow"
    assert server.cli("budgets", "--json").json() == {"scopes": []}

    added = server.cli("schedule", "add", "hello", "--every", "1h", "-i", "times=2", "--json")
    assert added.code == 0, added.stderr
    assert added.json()["inputs"] == {"times": 2} and added.json()["workflow"] == "hello"
    assert [s["name"] for s in server.cli("schedule", "list", "--json").json()] == ["hello"]
    removed = server.cli("schedule", "remove", "hello", "--json")
    assert removed.code == 0 and server.cli("schedule", "list", "--json").json() == []


def test_a_server_that_does_not_answer_is_one_line_naming_its_url(
    server: Server, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = server.cli("runs", url=url)
    assert result.code == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: cannot reach the podium server at {url}")
    local_file = tmp_path / "flow.yaml"
    local_file.write_text("name: x\nsteps: {a: {kind: sim}}\n")
    sent = server.cli("run", str(local_file))
    assert sent.code == 2 and "local file" in sent.stderr
    assert os.path.exists(local_file)
