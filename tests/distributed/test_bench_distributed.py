"""Smoke test of `python -m bench --config distributed`: the report's shape, never its speed."""

from __future__ import annotations

import json
import subprocess
import sys

import cluster
import pytest


@pytest.mark.timeout(120)
def test_the_distributed_bench_reports_every_field_per_worker_count() -> None:
    cluster.require_services()
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--config", "distributed", "--workers", "1,2",
         "--workload", "W1", "--scale", "0.05", "--json"],
        cwd=cluster.ROOT, capture_output=True, text=True, timeout=110, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    reports = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert [r["workers"] for r in reports] == [1, 2]
    for report in reports:
        assert report["config"] == "distributed-postgres-redis"
        assert report["workload"] == "W1" and report["n_workflows"] == 10
        assert report["durable"] is True
        assert report["decision_samples"] == 10 * 9  # body times came back from the workers
        assert len(report["workers_peak_rss_mib"]) == report["workers"]
        for field in ("wall_s", "workflows_per_s", "steps_per_s", "peak_rss_mib"):
            assert report[field] > 0, field
        for field in ("e2e_latency_ms", "decision_latency_ms", "queue_wait_ms"):
            assert report[field]["p50"] <= report[field]["p95"] <= report[field]["p99"]


def test_the_distributed_bench_refuses_profile_and_bad_worker_counts() -> None:
    for args in (["--profile", "/tmp/p"], ["--workers", "0"], ["--workers", "two"]):
        proc = subprocess.run(
            [sys.executable, "-m", "bench", "--config", "distributed", *args],
            cwd=cluster.ROOT, capture_output=True, text=True, timeout=60, check=False,
        )
        assert proc.returncode == 2, (args, proc.stderr)
