"""Runs one workload in this process and writes its report as JSON: `python -m bench._one W2`.

`python -m bench` starts one of these per workload and repetition, so peak RSS is per workload.
With `--config distributed --workers N` this process submits and N worker processes run it.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import sys
from collections.abc import Coroutine, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.measure import BenchError
from bench.runner import run_workload
from bench.workloads import NAMES, build, with_control
from podium import loop as podium_loop
from podium.settings import Settings

CONTROL_TOML = Path(__file__).with_name("control.toml")


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench._one")
    parser.add_argument("workload", choices=NAMES)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--db", type=Path, help="SQLite file to create (embedded)")
    parser.add_argument("--out", type=Path, required=True, help="where the JSON report goes")
    parser.add_argument("--profile", type=Path, help="write cProfile stats here")
    parser.add_argument("--config", choices=("embedded", "distributed"), default="embedded")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (distributed)")
    parser.add_argument("--worker-concurrency", type=int, default=200,
                        help="runs one worker executes at once (distributed)")
    parser.add_argument("--control", action="store_true",
                        help="configure the control layer, not binding (bench/control.toml)")
    parser.add_argument("--trace", action="store_true",
                        help="trace the runs, exporting as the OTEL_* variables say (embedded)")
    args = parser.parse_args(argv)
    if args.config == "embedded" and args.db is None:
        parser.error("--db is required with --config embedded")
    return args


def _run(coro: Coroutine[Any, Any, dict[str, Any]], profile: Path | None) -> dict[str, Any]:
    if profile is None:
        return podium_loop.run(coro)
    profiler = cProfile.Profile()
    report = profiler.runcall(podium_loop.run, coro)
    profiler.dump_stats(profile)
    report["profiled"] = True
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    spec = build(args.workload).scaled(args.scale)
    settings = Settings()
    if args.control:
        spec = replace(spec, workflow=with_control(spec.workflow))
        settings = Settings(config=CONTROL_TOML)
    try:
        if args.config == "distributed":
            from bench.distributed import run_distributed

            coro = run_distributed(spec, settings, args.workers, args.worker_concurrency)
        else:
            coro = run_workload(spec, args.db, settings, trace=args.trace)
        report = _run(coro, args.profile)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    report["control"] = args.control
    report["trace"] = args.trace
    args.out.write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
