"""Output of `python -m bench`: one JSON line per workload, or a table; profile summaries.

The table uses rich when it is installed and falls back to plain aligned text.
"""

from __future__ import annotations

import io
import pstats
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

COLUMNS: tuple[tuple[str, Callable[[dict[str, Any]], Any]], ...] = (
    ("workload", lambda r: r["workload"]),
    ("workers", lambda r: r.get("workers", "-")),
    ("N", lambda r: r["n_workflows"]),
    ("steps", lambda r: r["steps_per_workflow"]),
    ("wall s", lambda r: r["wall_s"]),
    ("wf/s", lambda r: r["workflows_per_s"]),
    ("steps/s", lambda r: r["steps_per_s"]),
    ("e2e p50 ms", lambda r: r["e2e_latency_ms"]["p50"]),
    ("e2e p99 ms", lambda r: r["e2e_latency_ms"]["p99"]),
    ("decision p50 ms", lambda r: r["decision_latency_ms"]["p50"]),
    ("decision p99 ms", lambda r: r["decision_latency_ms"]["p99"]),
    ("queue p99 ms", lambda r: r["queue_wait_ms"]["p99"]),
    ("peak RSS MiB", lambda r: r["peak_rss_mib"]),
)


def _cells(report: dict[str, Any]) -> list[str]:
    return [str(get(report)) for _, get in COLUMNS]


def print_table(reports: list[dict[str, Any]]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print_plain(reports)
        return
    configs = ", ".join(sorted({str(r["config"]) for r in reports}))
    table = Table(title=f"podium bench ({configs}, medians)")
    for name, _ in COLUMNS:
        table.add_column(name, justify="left" if name == "workload" else "right", no_wrap=True)
    for report in reports:
        table.add_row(*_cells(report))
    Console(width=None if sys.stdout.isatty() else 200).print(table)


def print_plain(reports: list[dict[str, Any]]) -> None:
    rows = [[name for name, _ in COLUMNS], *(_cells(r) for r in reports)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    for row in rows:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))


def profile_summary(path: Path, top: int = 15) -> str:
    """The top functions of a cProfile dump, by cumulative and by own (tottime) time."""
    out = io.StringIO()
    stats = pstats.Stats(str(path), stream=out)
    stats.strip_dirs()
    for order in ("cumulative", "tottime"):
        out.write(f"\n--- {path.name}: top {top} by {order} ---\n")
        stats.sort_stats(order).print_stats(top)
    return out.getvalue()


def note(message: str) -> None:
    """Progress goes to stderr so stdout keeps only the report."""
    print(message, file=sys.stderr, flush=True)
