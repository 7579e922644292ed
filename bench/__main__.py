"""`python -m bench [--workload W2|all] [--runs K] [--json] [--scale F] [--store-dir DIR]
[--config embedded|distributed] [--workers 1,2,4] [--control] [--trace]`.

Runs each workload K times, each in a fresh subprocess, and reports the median of each figure;
in the distributed configuration, once per worker count.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.measure import BenchError, median_of, run_isolated
from bench.report import note, print_table, profile_summary
from bench.workloads import NAMES

RAW_FIELDS = (
    "wall_s", "workflows_per_s", "steps_per_s", "e2e_latency_ms", "decision_latency_ms",
    "queue_wait_ms", "peak_rss_mib", "cpu_s",
)


def _workloads(value: str) -> list[str]:
    if value.lower() == "all":
        return list(NAMES)
    names = [v.strip().upper() for v in value.split(",")]
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown workload {unknown[0]!r}; use W1..W6 or all")
    return names


def _counts(value: str) -> list[int]:
    try:
        counts = [int(v) for v in value.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a comma list of integers (got {value!r})"
        ) from None
    if any(c < 1 for c in counts):
        raise argparse.ArgumentTypeError(f"worker counts must be at least 1 (got {value!r})")
    return counts


def _positive(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0 (got {value})")
    return number


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--workload", type=_workloads, default=list(NAMES),
                        help="W1..W6, a comma list, or all (default)")
    parser.add_argument("--runs", type=int, default=1, help="repetitions per workload (median)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--scale", type=_positive, default=1.0,
                        help="multiply each N (W5: repeats) by this, at least 1")
    parser.add_argument("--store-dir", type=Path, help="keep the SQLite files here")
    parser.add_argument("--profile", type=Path, help="cProfile each run into DIR, print top 15")
    parser.add_argument("--timeout", type=_positive, default=3600.0,
                        help="seconds one workload run may take")
    parser.add_argument("--config", choices=("embedded", "distributed"), default="embedded",
                        help="embedded: SQLite, in-process (default); distributed: PostgreSQL"
                        " + Redis Streams with N `podium worker` processes")
    parser.add_argument("--workers", type=_counts, default=[1, 2],
                        help="distributed: worker process counts, a comma list (default 1,2)")
    parser.add_argument("--worker-concurrency", type=int, default=200,
                        help="distributed: runs one worker executes at once (default 200)")
    parser.add_argument("--control", action="store_true",
                        help="configure every control (limits, circuits, capacities, budgets)"
                        " far from binding: what the control layer costs")
    parser.add_argument("--trace", action="store_true",
                        help="run each workload with tracing off, then on, exporting over OTLP/HTTP"
                        " to a throwaway receiver: what tracing costs (embedded)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.config == "distributed" and args.profile:
        parser.error("--profile profiles the embedded engine; profile a worker with py-spy")
    if args.worker_concurrency < 1:
        parser.error("--worker-concurrency must be at least 1")
    if args.trace and args.config == "distributed":
        parser.error("--trace measures the embedded engine")
    return args


def measure(
    name: str, args: argparse.Namespace, store_dir: Path, workers: int | None = None,
    trace: bool = False,
) -> dict[str, Any]:
    """Runs one workload `--runs` times and merges the reports (medians plus the raw list).

    `workers` set: the distributed configuration with that many worker processes; `trace`:
    with tracing on (the OTEL_* variables of this process say where spans go)."""
    reports = []
    extra: list[str] = ["--control"] if args.control else []
    label = name
    if trace:
        extra.append("--trace")
        label = f"{name}+trace"
    if workers is not None:
        extra += ["--config", "distributed", "--workers", str(workers),
                 "--worker-concurrency", str(args.worker_concurrency)]
        label = f"{name} ({workers} workers)"
    for k in range(1, args.runs + 1):
        note(f"{label}: run {k}/{args.runs} ...")
        profile = args.profile / f"{label}-{k}.prof" if args.profile else None
        tag = name.lower() + ("-trace" if trace else "")
        stem = store_dir / (f"{tag}-{k}" if workers is None else f"{tag}-w{workers}-{k}")
        reports.append(run_isolated(
            name, args.scale, stem.with_suffix(".db"), stem.with_suffix(".json"),
            profile, args.timeout, extra,
        ))
        if profile is not None:
            note(profile_summary(profile))
    merged: dict[str, Any] = median_of(reports)
    merged["runs"] = args.runs
    merged["raw"] = [{f: r[f] for f in RAW_FIELDS if f in r} for r in reports]
    return merged


def run_all(args: argparse.Namespace, store_dir: Path) -> tuple[list[dict[str, Any]], int]:
    reports, status = [], 0
    worker_counts: list[int | None] = [None]
    if args.config == "distributed":
        worker_counts = list(args.workers)
    for name in args.workload:
        for workers in worker_counts:
            try:
                found = [measure(name, args, store_dir, workers)]
                if args.trace:
                    found.append(traced(name, args, store_dir, found[0]))
            except BenchError as exc:
                note(f"error: {exc}")
                status = 1
                continue
            for report in found:
                reports.append(report)
                if args.json:
                    print(json.dumps(report), flush=True)
    return reports, status


def traced(
    name: str, args: argparse.Namespace, store_dir: Path, untraced: dict[str, Any]
) -> dict[str, Any]:
    """The workload again with tracing on, exporting to a throwaway OTLP receiver (its own
    process, as a collector would be); the report says what tracing cost against `untraced`."""
    count_file = store_dir / f"{name.lower()}-spans.txt"
    sink = subprocess.Popen(
        [sys.executable, "-m", "bench.otlp_sink", str(count_file)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert sink.stdout is not None
        endpoint = sink.stdout.readline().strip()
        saved = {k: os.environ.get(k) for k in _OTEL}
        os.environ.update({
            "OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_SERVICE_NAME": "podium-bench",
        })
        try:
            report = measure(name, args, store_dir, trace=True)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    finally:
        sink.terminate()
        sink.wait(10)
    report["workload"] = f"{name}+trace"
    report["spans_received"] = int(count_file.read_text()) if count_file.exists() else 0
    slower = untraced["workflows_per_s"] / report["workflows_per_s"] - 1
    report["trace_cost_pct"] = round(100 * slower, 1)
    if untraced.get("cpu_s"):  # steadier than wall time on a busy machine
        report["trace_cpu_cost_pct"] = round(100 * (report["cpu_s"] / untraced["cpu_s"] - 1), 1)
    return report


_OTEL = ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    if args.store_dir is not None:
        args.store_dir.mkdir(parents=True, exist_ok=True)
        reports, status = run_all(args, args.store_dir.resolve())
    else:
        with tempfile.TemporaryDirectory(prefix="podium-bench-") as tmp:
            reports, status = run_all(args, Path(tmp))
    if not args.json and reports:
        print_table(reports)
    return status


if __name__ == "__main__":
    sys.exit(main())
