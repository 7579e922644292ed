"""`podium gc`: delete finished runs older than a duration (and, if asked, the audit log's start).

Acts on the store directly, in short batches, so engines sharing the store keep running.
"""

from __future__ import annotations

from typing import Annotated

import typer

from podium.cli.common import (
    JsonOption,
    StoreOption,
    UsageProblem,
    guarded,
    opened_store,
    out,
    print_json,
    run_async,
    settings_for,
)
from podium.clock import SYSTEM_CLOCK
from podium.control.retention import DUTY, Policy, Report, collect
from podium.model.units import parse_duration
from podium.settings import Settings


@guarded
def gc_command(
    older_than: Annotated[
        str | None,
        typer.Option("--older-than", metavar="DURATION",
                     help="Delete runs that finished longer ago than this: 30d, 12h"
                     " (default: [retention] finished_runs)"),
    ] = None,
    audit_older_than: Annotated[
        str | None,
        typer.Option("--audit-older-than", metavar="DURATION",
                     help="Also prune audit entries older than this from the chain's start,"
                     " leaving an anchor that `podium audit verify` starts from"
                     " (default: [retention] audit; none: the audit log is kept)"),
    ] = None,
    batch: Annotated[
        int | None,
        typer.Option("--batch", min=1, max=10_000,
                     help="Runs per transaction (default: [retention] batch, 500)"),
    ] = None,
    include_dlq: Annotated[
        bool,
        typer.Option("--include-dlq", help="Delete dead-lettered runs and their DLQ entries too"),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be deleted; delete nothing")
    ] = False,
    json_output: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """Delete finished runs older than a duration, with their steps, signals and DLQ entries."""
    settings = settings_for(store, None)
    policy = _policy(settings, older_than, audit_older_than, batch, include_dlq)
    report = run_async(_collect(settings, policy, dry_run))
    if json_output:
        print_json(report_json(report))
    else:
        out.print(report.line(), markup=False, highlight=False)


def _policy(
    settings: Settings, older_than: str | None, audit_older_than: str | None,
    batch: int | None, include_dlq: bool,
) -> Policy:
    config = settings.control.retention
    runs_s = _duration("--older-than", older_than) if older_than else config.finished_runs
    if runs_s is None:
        raise UsageProblem("--older-than: give a duration (e.g. 30d), or set [retention]"
                           " finished_runs in podium.toml")
    audit_s = (_duration("--audit-older-than", audit_older_than) if audit_older_than
               else config.audit)
    return Policy(runs_s, audit_s, batch or config.batch, include_dlq or config.include_dlq)


def _duration(option: str, text: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise UsageProblem(f"{option}: {exc}") from None
    if seconds <= 0:
        raise UsageProblem(f"{option}: must be longer than zero (got {text!r})")
    return seconds


async def _collect(settings: Settings, policy: Policy, dry_run: bool) -> Report:
    async with opened_store(settings) as store:
        if dry_run:  # reads only
            return await collect(store, policy, SYSTEM_CLOCK, dry_run=True)
        async with store.exclusive(DUTY) as mine:
            if not mine:
                # An engine's retention duty is deleting right now: one pass at a time.
                return Report(skipped=True)
            return await collect(store, policy, SYSTEM_CLOCK)


def report_json(report: Report) -> dict[str, object]:
    return {
        "dry_run": report.dry_run, "skipped": report.skipped, "runs": report.runs,
        "steps": report.steps, "events": report.events, "signals": report.signals,
        "dlq": report.dlq, "batches": report.batches,
        "max_batch_s": round(report.max_batch_s, 6), "seconds": round(report.seconds, 6),
        "audit_anchor_seq": report.anchor_seq,
    }
