"""`podium worker --metrics-port`: the worker's own scrape port, and its bad options.

The worker runs as a real process on a SQLite store; its port is scraped over HTTP.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from clocklib import eventually
from metricslib import Scrape
from test_metrics_prometheus import free_port

CLI = [sys.executable, "-m", "podium.cli.app"]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PODIUM_")}


async def test_a_worker_serves_metrics_on_its_port_until_it_stops(tmp_path: Path) -> None:
    port = free_port()
    store = f"sqlite:///{tmp_path / 'podium.db'}"
    log = tmp_path / "worker-obs-metrics.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [*CLI, "worker", "--store", store, "--metrics-port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, env=_env(), cwd=tmp_path,
        )
    text: list[str] = []

    async def scraped() -> bool:
        assert worker.poll() is None, log.read_text()
        try:
            async with httpx.AsyncClient() as client:
                response = await client.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
        except httpx.HTTPError:
            return False
        text[:] = [response.text]
        # Its own heartbeat is in the store by the time the gauge says so.
        return Scrape.parse(response.text).value("podium_workers", state="running") == 1

    try:
        await eventually(scraped, timeout_s=60)
        scrape = Scrape.parse(text[0])
        assert scrape.value("podium_state_up") == 1
        assert "podium_desired_workers" in scrape.names
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0, log.read_text()
    assert f"metrics on http://127.0.0.1:{port}/metrics" in log.read_text()


def test_a_bad_metrics_host_is_a_usage_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [*CLI, "worker", "--store", f"sqlite:///{tmp_path / 'p.db'}", "--metrics-port", "0",
         "--metrics-host", "256.1.1.1"],
        capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=60, check=False,
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: --metrics-host: '256.1.1.1' is not an address")
