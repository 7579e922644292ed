"""Schedule specs (`--cron`, `--every`, `--at`): parsing, and when a schedule fires next.

Pure functions over epoch seconds, no I/O: the scheduler and the CLI share them.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter  # type: ignore[import-untyped]

from podium.errors import PodiumError
from podium.model.units import parse_duration

SpecKind = Literal["cron", "at", "every"]
SPEC_KINDS: tuple[SpecKind, ...] = ("cron", "at", "every")
# Every tick's run id is uuid5(this, "<schedule id>@<tick>"): the same tick, the same run.
DERIVED_NAME_TRIES = 100  # workflow, workflow-2, ... before asking for a name
_RUN_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "podium:schedule-tick")


class ScheduleSpecInvalid(PodiumError):
    """A bad `--cron`, `--every`, `--at` or `--tz`; the message names the option."""

    code = "schedule_spec_invalid"

    def __init__(self, option: str, text: str, why: str) -> None:
        self.option = option
        super().__init__(f"--{option}: {why} (got {text!r})")


@dataclass(frozen=True, slots=True)
class Spec:
    """A parsed schedule: `text` as the user gave it; `interval_s` for `every`, `at` for `at`."""

    kind: SpecKind
    text: str
    timezone: str = "UTC"
    interval_s: float = 0.0
    at: float = 0.0


def parse_spec(kind: str, text: str, timezone: str = "UTC", *, now: float) -> Spec:
    """Checks a spec; an `at` time must lie after `now`. Raises ScheduleSpecInvalid."""
    _zone(timezone)
    if kind == "cron":
        return _parse_cron(text, timezone, now)
    if kind == "every":
        return Spec("every", text, timezone, interval_s=_parse_every(text))
    if kind == "at":
        return _parse_at(text, timezone, now)
    raise ScheduleSpecInvalid("kind", kind, f"use one of {', '.join(SPEC_KINDS)}")


def load_spec(kind: str, text: str, timezone: str) -> Spec:
    """A spec read back from the store: checked when it was added, so no `at` deadline check."""
    return parse_spec(kind, text, timezone, now=-math.inf)


def first_fire(spec: Spec, now: float) -> float:
    """When a schedule added at `now` fires first: always after `now`."""
    if spec.kind == "at":
        return spec.at
    if spec.kind == "every":
        return now + spec.interval_s
    return _cron_after(spec, now)


def next_fire(spec: Spec, tick: float, now: float) -> float | None:
    """The fire after `tick` (the one being fired now): the first one after `now`, so ticks
    missed while nothing ran fire once, not once each. None: an `at` schedule is done."""
    if spec.kind == "at":
        return None
    if spec.kind == "every":
        # Stays on the grid tick + k * interval, skipping every point at or before `now`.
        steps = max(1, math.floor((now - tick) / spec.interval_s) + 1)
        following = tick + steps * spec.interval_s
        while following <= now:  # float rounding at a grid point
            following += spec.interval_s
        return following
    return _cron_after(spec, max(now, tick))


def candidate_names(base: str, *, derived: bool) -> Iterator[str]:
    """A schedule's name, then (for a name derived from its workflow's) `base-2`, `base-3`...
    until one is free; a name the user chose is tried alone."""
    yield base
    if derived:
        for attempt in range(2, DERIVED_NAME_TRIES + 1):
            yield f"{base}-{attempt}"


def tick_run_id(schedule_id: str, tick: float) -> str:
    """The run id of one tick: deterministic, so a tick submitted twice is one run."""
    return str(uuid.uuid5(_RUN_NAMESPACE, f"{schedule_id}@{tick!r}"))


def parse_time(text: str) -> float:
    """Epoch seconds from ISO 8601 (`2030-01-01T09:00`, `...Z`, `...+02:00`); naive is UTC."""
    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _zone(timezone: str) -> ZoneInfo:
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleSpecInvalid(
            "tz", timezone, "not a known time zone; use an IANA name such as Europe/Paris or UTC"
        ) from None


def _parse_cron(text: str, timezone: str, now: float) -> Spec:
    expression = " ".join(text.split())
    if not expression or not croniter.is_valid(expression):
        raise ScheduleSpecInvalid(
            "cron", text,
            "not a cron expression; use 5 fields (minute hour day month weekday, e.g."
            " '*/15 * * * *'), 6 with seconds last, or @hourly/@daily/@weekly/@monthly",
        )
    spec = Spec("cron", expression, timezone)
    if math.isinf(now):  # read back from the store: checked when it was added
        return spec
    try:
        _cron_after(spec, now)
    except Exception:  # croniter gives up on dates that never come (e.g. 31 February)
        raise ScheduleSpecInvalid("cron", text, "this expression never fires") from None
    return spec


def _parse_every(text: str) -> float:
    try:
        interval_s = parse_duration(text)
    except ValueError as exc:
        raise ScheduleSpecInvalid("every", text, str(exc).split(" (got")[0]) from None
    if not interval_s > 0 or math.isinf(interval_s):
        raise ScheduleSpecInvalid("every", text, "the interval must be more than zero")
    return interval_s


def _parse_at(text: str, timezone: str, now: float) -> Spec:
    try:
        at = parse_time(text)
    except (ValueError, OverflowError, OSError):
        raise ScheduleSpecInvalid(
            "at", text, "not an ISO 8601 time; use e.g. 2030-01-01T09:00 (UTC) or"
            " 2030-01-01T09:00+02:00"
        ) from None
    if at <= now:
        raise ScheduleSpecInvalid("at", text, "this time is in the past")
    return Spec("at", text.strip(), timezone, at=at)


def _cron_after(spec: Spec, after: float) -> float:
    """The first cron match strictly after `after`, in the schedule's time zone."""
    start = datetime.fromtimestamp(after, ZoneInfo(spec.timezone))
    moment: datetime = croniter(spec.text, start).get_next(datetime)
    following = moment.timestamp()
    while following <= after:  # croniter drops sub-second parts: never hand back `after`
        moment = croniter(spec.text, moment).get_next(datetime)
        following = moment.timestamp()
    return following
