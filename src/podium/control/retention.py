"""Retention: `podium gc`'s pass over the store, and the duty that runs it every `every`.

A pass deletes old finished runs batch by batch, then prunes the audit chain's start.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog

from podium.clock import Clock, sleep_unless
from podium.control.config import Retention
from podium.store.base import Store
from podium.supervisor import Supervisor

log = structlog.get_logger("podium.retention")

DUTY = "gc"  # the store-wide turn (`Store.exclusive`) a pass takes
FIRST_PASS_MAX_S = 300.0  # the first pass comes this soon after start at the latest


@dataclass(frozen=True, slots=True)
class Policy:
    """What a pass deletes: runs finished more than `runs_s` ago, audit entries older than
    `audit_s` (None: that kind stays), `batch` at a time."""

    runs_s: float | None
    audit_s: float | None = None
    batch: int = 500
    include_dlq: bool = False

    @classmethod
    def of(cls, config: Retention) -> Policy:
        return cls(config.finished_runs, config.audit, config.batch, config.include_dlq)


@dataclass(slots=True)
class Report:
    """What a pass deleted (or, dry, would delete); `max_batch_s`: its longest transaction."""

    runs: int = 0
    steps: int = 0
    signals: int = 0
    dlq: int = 0
    events: int = 0
    batches: int = 0
    max_batch_s: float = 0.0
    anchor_seq: int = 0
    dry_run: bool = False
    skipped: bool = False  # another process had the turn
    seconds: float = 0.0

    def line(self) -> str:
        if self.skipped:
            return "gc skipped: another process is running a retention pass on this store"
        verb = "would delete" if self.dry_run else "deleted"
        return (
            f"gc {verb} {self.runs} run(s), {self.steps} step(s), {self.events} event(s)"
            f" ({self.signals} signal(s), {self.dlq} DLQ entr{'y' if self.dlq == 1 else 'ies'})"
            + ("" if self.dry_run else f" in {self.batches} batch(es)")
        )


async def collect(
    store: Store, policy: Policy, clock: Clock, *, dry_run: bool = False,
    stop: asyncio.Event | None = None,
) -> Report:
    """One pass (ended early, between two batches, once `stop` is set). Each batch is its own
    short transaction, so an engine sharing the store waits at most one batch for the lock."""
    report = Report(dry_run=dry_run)
    stop = stop or asyncio.Event()
    started = clock.monotonic()
    if policy.runs_s is not None:
        before = clock.now() - policy.runs_s
        if dry_run:
            found = await store.gc_preview(before, include_dlq=policy.include_dlq)
            report.runs, report.steps, report.signals, report.dlq = (
                found.runs, found.steps, found.signals, found.dlq)
        else:
            await _delete_runs(store, policy, before, clock, report, stop)
    if policy.audit_s is not None:
        before = clock.now() - policy.audit_s
        if dry_run:
            report.events = await store.audit_prune_preview(before)
        else:
            await _prune_audit(store, policy, before, clock, report, stop)
    report.seconds = clock.monotonic() - started
    return report


async def _delete_runs(
    store: Store, policy: Policy, before: float, clock: Clock, report: Report, stop: asyncio.Event
) -> None:
    after = 0.0
    while True:
        began = clock.monotonic()
        batch = await store.delete_finished_runs(
            before, policy.batch, include_dlq=policy.include_dlq, after=after
        )
        report.max_batch_s = max(report.max_batch_s, clock.monotonic() - began)
        report.batches += 1
        report.runs += batch.runs
        report.steps += batch.steps
        report.signals += batch.signals
        report.dlq += batch.dlq
        if batch.runs < policy.batch or batch.next_after is None or stop.is_set():
            return
        # The next batch starts at the newest run taken: runs kept back (unfinished, dead-
        # lettered) before it are not looked at again.
        after = batch.next_after
        await asyncio.sleep(0)  # the engine's own work between two batches


async def _prune_audit(
    store: Store, policy: Policy, before: float, clock: Clock, report: Report, stop: asyncio.Event
) -> None:
    while True:
        began = clock.monotonic()
        pruned = await store.prune_audit(before, policy.batch)
        report.max_batch_s = max(report.max_batch_s, clock.monotonic() - began)
        report.batches += 1
        report.events += pruned.events
        report.anchor_seq = pruned.anchor_seq
        if pruned.events < policy.batch or stop.is_set():
            return
        await asyncio.sleep(0)


class RetentionDuty:
    """Runs a pass every `every` (the first within FIRST_PASS_MAX_S of start) while the
    control plane lives; of the processes sharing a store, the one holding the store-wide
    turn does it, the others skip that round. A failed pass is logged and tried next round."""

    def __init__(self, store: Store, config: Retention, clock: Clock) -> None:
        self.store = store
        self.policy = Policy.of(config)
        self.every_s = config.every
        self.clock = clock
        self.passes: list[Report] = []  # the last few, newest last (for tests and operators)
        self._stopping = asyncio.Event()
        self._tasks = Supervisor("retention")
        self._task: asyncio.Task[None] | None = None

    @property
    def wanted(self) -> bool:
        return self.policy.runs_s is not None or self.policy.audit_s is not None

    def start(self) -> None:
        if self.wanted and self._task is None:
            self._task = self._tasks.start(self._loop(), name="gc")

    async def close(self) -> None:
        """Stops after the batch in progress: a store query is never cancelled midway."""
        self._stopping.set()
        if self._task is not None:
            await self._tasks.join()
            self._task = None

    async def _loop(self) -> None:
        wait_s = min(self.every_s, FIRST_PASS_MAX_S)
        while not await sleep_unless(self.clock, self._stopping, wait_s):
            wait_s = self.every_s
            try:
                report = await self.run_once()
            except Exception as exc:  # the store is down: try again next round
                log.warning("retention pass failed", error=str(exc))
                continue
            if report.runs or report.events:
                log.info("retention pass", runs=report.runs, steps=report.steps,
                         events=report.events, batches=report.batches,
                         max_batch_s=round(report.max_batch_s, 4))

    async def run_once(self) -> Report:
        """One pass, if this process gets the store-wide turn."""
        async with self.store.exclusive(DUTY) as mine:
            report = (
                await collect(self.store, self.policy, self.clock, stop=self._stopping) if mine
                else Report(skipped=True)
            )
        self.passes = [*self.passes[-9:], report]
        return report
