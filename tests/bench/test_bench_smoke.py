"""Smoke test of the benchmark harness: `python -m bench --workload W1 --json --scale 0.05`.

It checks the report's shape and types only; speed is never asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PERCENTILE_FIELDS = ("e2e_latency_ms", "decision_latency_ms", "queue_wait_ms")
NUMBER_FIELDS = ("wall_s", "workflows_per_s", "steps_per_s", "peak_rss_mib")


def _run_bench(tmp_path: Path, *args: str) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", *args, "--store-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=100, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def _assert_percentiles(value: Any) -> None:
    assert set(value) == {"p50", "p95", "p99"}
    assert all(isinstance(v, int | float) and v >= 0 for v in value.values())
    assert value["p50"] <= value["p95"] <= value["p99"]


def test_w1_json_report_has_every_field(tmp_path: Path) -> None:
    reports = _run_bench(tmp_path, "--workload", "W1", "--json", "--scale", "0.05")
    assert len(reports) == 1
    report = reports[0]
    assert report["workload"] == "W1"
    assert report["config"] == "embedded-sqlite"
    assert report["durable"] is True
    assert report["n_workflows"] == 10  # 200 * 0.05
    assert report["steps_per_workflow"] == 10
    assert report["decision_samples"] == 10 * 9  # one edge per non-root step of each chain
    assert isinstance(report["max_active_runs"], int)
    for field in NUMBER_FIELDS:
        assert isinstance(report[field], int | float) and report[field] > 0, field
    for field in PERCENTILE_FIELDS:
        _assert_percentiles(report[field])
    assert isinstance(report["python"], str)
    assert isinstance(report["cpu_count"], int)
    assert report["runs"] == 1 and len(report["raw"]) == 1
    assert (tmp_path / "w1-1.db").exists()


def test_unknown_workload_is_a_usage_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--workload", "W9", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 2
    assert "W9" in proc.stderr


def test_trace_reports_the_spans_received_and_what_tracing_cost(tmp_path: Path) -> None:
    reports = _run_bench(tmp_path, "--workload", "W2", "--json", "--scale", "0.05", "--trace")
    untraced, traced = reports
    assert untraced["workload"] == "W2" and traced["workload"] == "W2+trace"
    assert traced["trace"] is True and untraced["trace"] is False
    # Each of the 10 runs: its root, 10 attempts, and the time it was queued (if any).
    assert 10 * 11 <= traced["spans_received"] <= 10 * 12
    assert isinstance(traced["trace_cost_pct"], int | float)
    assert isinstance(traced["trace_cpu_cost_pct"], int | float)
    assert traced["cpu_s"] > 0 and traced["export_cpu_s"] > 0  # the export process's own
    assert "export_cpu_s" not in untraced
