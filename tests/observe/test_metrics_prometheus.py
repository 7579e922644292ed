"""A real scraper: Debian's `prometheus` server scrapes `podium serve` with a `metrics` key,
and its HTTP API answers `podium_runs_total` for the workflow that ran.

Under CI=true a missing `prometheus` binary fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from clocklib import eventually

from podium.api.keys import new_key
from podium.events import SYSTEM_ACTOR, audit_event
from podium.store import open_store

CLI = [sys.executable, "-m", "podium.cli.app"]
FLOW = {"name": "prom-scraped", "steps": {"a": {"kind": "sim", "output": 1}}}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        message = "the prometheus server is not installed (apt-get install -y prometheus)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


async def _keys(store_url: str) -> dict[str, str]:
    async with open_store(store_url) as store:
        tokens = {}
        for role in ("admin", "metrics"):
            token, record = new_key(role, role, None, None, time.time(), "test")
            await store.add_key(record, audit_event(SYSTEM_ACTOR, "key.create", record.key_id))
            tokens[role] = token
    return tokens


def _start(args: list[str], log: Path, **kwargs: Any) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, **kwargs)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in reversed(started):
        _stop(proc)


async def _answers(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    async def up() -> bool:
        assert proc.poll() is None, f"{proc.args[0]} exited:\n{log.read_text()}"
        try:
            async with httpx.AsyncClient() as client:
                return (await client.get(url, timeout=1)).status_code == 200
        except httpx.HTTPError:
            return False

    await eventually(up, timeout_s=60)


@pytest.mark.slow  # a real Prometheus server scraping podium serve
async def test_prometheus_scrapes_podium_serve_and_answers_runs_total(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    binary = prometheus_binary()
    store_url = f"sqlite:///{tmp_path / 'podium.db'}"
    keys = await _keys(store_url)
    serve_port, prom_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PODIUM_")}
    serve_log = tmp_path / "serve.log"
    serve = _start(
        [*CLI, "serve", "--host", "127.0.0.1", "--port", str(serve_port), "--store", store_url],
        serve_log, env=env, cwd=tmp_path,
    )
    processes.append(serve)
    podium = f"http://127.0.0.1:{serve_port}"
    await _answers(f"{podium}/healthz", serve, serve_log)

    admin = {"Authorization": f"Bearer {keys['admin']}"}
    async with httpx.AsyncClient(base_url=podium, headers=admin) as api:
        assert (await api.post("/v1/workflows", json={"definition": FLOW})).status_code in (
            200, 201)
        run_id = (await api.post("/v1/runs", json={"workflow_name": FLOW["name"]})).json()[
            "run_id"]

        async def finished() -> bool:
            return bool((await api.get(f"/v1/runs/{run_id}")).json()["status"] == "succeeded")

        await eventually(finished)

    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{
            "job_name": "podium",
            "metrics_path": "/metrics",
            "authorization": {"type": "Bearer", "credentials": keys["metrics"]},
            "static_configs": [{"targets": [f"127.0.0.1:{serve_port}"]}],
        }],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    prom_log = tmp_path / "prometheus.log"
    processes.append(_start([
        binary, f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'tsdb-obs-metrics'}",
        f"--web.listen-address=127.0.0.1:{prom_port}",
    ], prom_log, cwd=tmp_path))
    prometheus = f"http://127.0.0.1:{prom_port}"
    await _answers(f"{prometheus}/-/ready", processes[-1], prom_log)

    query = f'podium_runs_total{{workflow="{FLOW["name"]}",status="succeeded"}}'
    answer: list[dict[str, Any]] = []

    async def scraped() -> bool:
        async with httpx.AsyncClient(base_url=prometheus) as client:
            body = (await client.get("/api/v1/query", params={"query": query})).json()
        assert body["status"] == "success", body
        answer[:] = body["data"]["result"]
        return bool(answer)

    await eventually(scraped, timeout_s=60)
    (series,) = answer
    assert series["metric"]["job"] == "podium"
    assert float(series["value"][1]) == 1.0
