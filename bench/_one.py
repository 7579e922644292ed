"""Runs one workload in this process and writes its report as JSON: `python -m bench._one W2`.

`python -m bench` starts one of these per workload and repetition, so peak RSS is per workload.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from bench.measure import BenchError
from bench.runner import run_workload
from bench.workloads import NAMES, build
from podium import loop as podium_loop
from podium.settings import Settings


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench._one")
    parser.add_argument("workload", choices=NAMES)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--db", type=Path, required=True, help="SQLite file to create")
    parser.add_argument("--out", type=Path, required=True, help="where the JSON report goes")
    parser.add_argument("--profile", type=Path, help="write cProfile stats here")
    return parser.parse_args(argv)


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
    try:
        report = _run(run_workload(spec, args.db, Settings()), args.profile)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    args.out.write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
