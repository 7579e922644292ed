"""Timing, percentiles, peak RSS, decision-latency pairing and the median of repeated runs.

Each workload runs in a fresh subprocess (`python -m bench._one`) so its peak RSS is its own.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent  # holds the `bench` package: the subprocess cwd
QUANTILES = (50, 95, 99)


class BenchError(RuntimeError):
    """A workload could not be measured (a run did not succeed, or its subprocess failed)."""


def quantile(ordered: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default) over sorted values."""
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    """p50/p95/p99 of `values`, rounded to microseconds of a millisecond figure."""
    if not values:
        return {f"p{q}": None for q in QUANTILES}
    ordered = sorted(values)
    return {f"p{q}": round(quantile(ordered, q / 100), 3) for q in QUANTILES}


def peak_rss_mib() -> float:
    """This process's peak resident set size so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    divisor = 1024 * 1024 if sys.platform == "darwin" else 1024
    return round(peak / divisor, 1)


def take_decision_latencies_ms(
    needs: Mapping[str, Sequence[str]],
    times: dict[tuple[str, str], tuple[float, float]],
    run_id: str,
) -> list[float]:
    """Per step with predecessors: its start minus the end of the predecessor that released it.

    For a join that is the last predecessor to finish; for a chain, the only one. The run's
    entries are removed from `times`, so the harness holds timings of unfinished runs only.
    """
    spans = {step_id: times.pop((run_id, step_id), None) for step_id in needs}
    latencies = []
    for step_id, preds in needs.items():
        span = spans[step_id]
        ends = [s[1] for p in preds if (s := spans[p]) is not None]
        if preds and span is not None and len(ends) == len(preds):
            latencies.append((span[0] - max(ends)) * 1000)
    return latencies


def median_of(values: list[Any]) -> Any:
    """Median of every numeric leaf across equally shaped reports; other leaves from the first."""
    first = values[0]
    if isinstance(first, dict):
        return {key: median_of([v.get(key) for v in values]) for key in first}
    if isinstance(first, bool) or not isinstance(first, int | float):
        return first
    numbers = [v for v in values if isinstance(v, int | float)]
    return round(statistics.median(numbers), 3) if numbers else None


def run_isolated(
    workload: str, scale: float, db_path: Path, out_path: Path,
    profile_path: Path | None = None, timeout_s: float | None = None,
    extra: Sequence[str] = (),
) -> dict[str, Any]:
    """Runs one workload in a fresh interpreter and returns its report.

    `extra` options go to `bench._one` (`--config distributed --workers N`...)."""
    cmd = [
        sys.executable, "-m", "bench._one", workload, "--scale", str(scale),
        "--db", str(db_path), "--out", str(out_path), *extra,
    ]
    if profile_path is not None:
        cmd += ["--profile", str(profile_path)]
    try:
        proc = subprocess.run(
            cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"{workload} did not finish within {timeout_s:g}s") from None
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise BenchError(f"{workload} failed (exit {proc.returncode}): {tail}")
    report: dict[str, Any] = json.loads(out_path.read_text())
    return report
