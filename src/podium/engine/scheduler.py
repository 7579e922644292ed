"""The scheduler loop: fires due schedules by submitting their runs through an engine.

Any number of schedulers may share a store: each tick is claimed by compare-and-set, so
exactly one of them submits it, under a run id derived from (schedule, tick).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import ValidationError

from podium.clock import sleep_unless
from podium.control.schedules import load_spec, next_fire, tick_run_id
from podium.errors import PodiumError, WorkflowInvalid
from podium.events import utc_iso
from podium.model.inputs import resolve_inputs
from podium.model.workflow import Workflow
from podium.store.schedules import Schedule

if TYPE_CHECKING:
    from podium.engine.engine import Engine

log = structlog.get_logger("podium.scheduler")

FIRED_EVENT = "system.schedule.fired"
_MIN_SLEEP_S = 0.01  # never spin, even when a tick is due right now


class Scheduler:
    """Fires due schedules every `poll_interval_s` (sooner when a tick is closer).

    Order of a fire: claim the tick (CAS on `next_at`, marking it pending), submit its run,
    then clear the pending mark. A scheduler that dies in between leaves the tick pending;
    after `claim_timeout_s` another one takes the claim over and submits the same run id,
    unless the run already exists. Use as `async with Scheduler(engine):` or call `tick()`.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        poll_interval_s: float | None = None,
        claim_timeout_s: float | None = None,
        on_fired: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.engine = engine
        self.on_fired = on_fired  # told of every run a tick submitted (the CLI prints a line)
        self.store = engine.store
        self.clock = engine.clock
        self.poll_interval_s = poll_interval_s or engine.settings.poll_interval_s
        self.claim_timeout_s = claim_timeout_s or engine.settings.lease_s
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._workflows: dict[str, Workflow] = {}  # one object per schedule: the engine caches it

    async def __aenter__(self) -> Scheduler:
        self._task = asyncio.create_task(self.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def stop(self) -> None:
        """Asks the loop to stop after the fire in progress (safe from a signal handler)."""
        self._stopping.set()

    async def close(self) -> None:
        """Stops the loop and waits for it: a fire in progress completes first."""
        self.stop()
        if self._task is not None:
            await self._task
            self._task = None

    async def run(self) -> None:
        """Fires due schedules until `stop()`."""
        while not self._stopping.is_set():
            wake_at: float | None = None
            try:
                await self.tick()
                wake_at = await self.store.next_schedule_at()
            except PodiumError as exc:
                log.warning("firing schedules failed", error=str(exc))
            delay_s = self.poll_interval_s
            if wake_at is not None:
                delay_s = min(delay_s, wake_at - self.clock.now())
            await sleep_unless(self.clock, self._stopping, max(delay_s, _MIN_SLEEP_S))

    async def tick(self, now: float | None = None) -> list[str]:
        """One round: fires every due tick this scheduler wins; returns the runs it submitted."""
        now = self.clock.now() if now is None else now
        submitted: list[str] = []
        for schedule in await self.store.due_schedules(now, now - self.claim_timeout_s):
            if self._stopping.is_set():
                break
            try:
                run_id = await self._take(schedule, now)
            except PodiumError as exc:  # one schedule's trouble must not starve the others
                log.warning("firing a schedule failed", schedule=schedule.name, error=str(exc))
                continue
            if run_id is not None:
                submitted.append(run_id)
        return submitted

    async def _take(self, schedule: Schedule, now: float) -> str | None:
        if schedule.pending_tick is not None:
            return await self._take_over(schedule, schedule.pending_tick, now)
        if schedule.next_at is None:
            return None
        tick = schedule.next_at
        spec = load_spec(schedule.kind, schedule.spec, schedule.timezone)
        following = next_fire(spec, tick, now)  # missed ticks fire once: the next is after now
        if not await self.store.claim_schedule_tick(schedule.schedule_id, tick, following, now):
            return None  # another scheduler fired this tick
        return await self._submit(schedule, tick, now)

    async def _take_over(self, schedule: Schedule, tick: float, now: float) -> str | None:
        """Finishes a tick whose scheduler claimed it and then went silent."""
        claimed_at = schedule.pending_since or 0.0
        if not await self.store.reclaim_schedule_tick(schedule.schedule_id, tick, claimed_at, now):
            return None
        log.warning("finishing a stale schedule tick", schedule=schedule.name, tick=utc_iso(tick))
        return await self._submit(schedule, tick, now)

    async def _submit(self, schedule: Schedule, tick: float, now: float) -> str | None:
        """Submits the tick's run unless it exists already, then clears the pending tick."""
        run_id = tick_run_id(schedule.schedule_id, tick)
        if await self.store.get_run(run_id) is None:
            try:
                workflow = self._workflow(schedule)
                inputs = resolve_inputs(workflow, schedule.inputs)
            except (ValidationError, WorkflowInvalid) as exc:
                # Checked when added, so only a podium upgrade gets here: skip, do not loop.
                log.error("a schedule's workflow no longer validates; tick skipped",
                          schedule=schedule.name, error=" ".join(str(exc).split()))
                await self.store.finish_schedule_tick(schedule.schedule_id, tick, None, now)
                return None
            # Queued just before the submit's own rows, so it commits in the same batch.
            payload = _fired_payload(schedule, tick, run_id, self.clock.now())
            self.engine.control.emit(run_id, FIRED_EVENT, payload)
            await self.engine.submit(
                workflow, inputs, run_id=run_id, trusted=schedule.trusted
            )
            log.info("schedule fired", schedule=schedule.name, run_id=run_id, tick=payload["tick"])
            if self.on_fired is not None:
                self.on_fired(payload)
        await self.store.finish_schedule_tick(schedule.schedule_id, tick, run_id, now)
        return run_id

    def _workflow(self, schedule: Schedule) -> Workflow:
        workflow = self._workflows.get(schedule.schedule_id)
        if workflow is None:
            workflow = Workflow.model_validate(schedule.definition)
            self._workflows[schedule.schedule_id] = workflow
        return workflow


def _fired_payload(schedule: Schedule, tick: float, run_id: str, now: float) -> dict[str, Any]:
    return {
        "schedule": schedule.name,
        "schedule_id": schedule.schedule_id,
        "tick": utc_iso(tick),
        "run_id": run_id,
        "late_s": round(max(0.0, now - tick), 3),
    }
