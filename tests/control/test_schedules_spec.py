"""Schedule specs: parsing with errors that name the option, and next-fire arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from croniter import croniter  # type: ignore[import-untyped]
from hypothesis import given
from hypothesis import strategies as st

from podium.control.schedules import (
    ScheduleSpecInvalid,
    first_fire,
    load_spec,
    next_fire,
    parse_spec,
    parse_time,
    tick_run_id,
)

NOW = datetime(2030, 6, 15, 12, 0, 0, tzinfo=UTC).timestamp()
CRONS = ["* * * * *", "*/5 * * * *", "0 9 * * 1-5", "30 2 1 * *", "@hourly", "15 10 * * 0",
         "*/10 * * * * *"]
times = st.floats(min_value=NOW - 5 * 365 * 86400, max_value=NOW + 5 * 365 * 86400)


@given(
    interval_ms=st.integers(min_value=1, max_value=30 * 86400 * 1000),
    tick=times,
    late_s=st.floats(min_value=0, max_value=365 * 86400),
)
def test_every_next_fire_is_the_first_grid_point_after_now(
    interval_ms: int, tick: float, late_s: float
) -> None:
    spec = parse_spec("every", f"{interval_ms}ms", now=NOW)
    interval_s = interval_ms / 1000
    now = tick + late_s
    following = next_fire(spec, tick, now)
    assert following is not None
    assert following > now
    periods = round((following - tick) / interval_s)
    assert periods >= 1
    assert abs(following - (tick + periods * interval_s)) <= 1e-5  # on the tick's grid
    assert periods == 1 or following - interval_s <= now + 1e-5  # the first one after now


@given(expression=st.sampled_from(CRONS), now=times)
def test_cron_next_fire_matches_croniter_and_lies_after_now(expression: str, now: float) -> None:
    spec = parse_spec("cron", expression, now=NOW)
    expected = croniter(expression, datetime.fromtimestamp(now, UTC)).get_next(datetime)
    following = next_fire(spec, now - 3600, now)
    assert following is not None
    assert following > now
    assert following == max(expected.timestamp(), following)
    assert following == first_fire(spec, now)
    if expected.timestamp() > now:
        assert following == expected.timestamp()


def test_a_cron_schedule_missed_for_days_fires_next_after_now() -> None:
    spec = parse_spec("cron", "*/5 * * * *", now=NOW)
    following = next_fire(spec, NOW - 3 * 86400, NOW + 1)
    assert following == NOW + 300


def test_a_cron_schedule_follows_its_time_zone() -> None:
    spec = parse_spec("cron", "0 9 * * *", "Europe/Paris", now=NOW)
    fire = datetime.fromtimestamp(first_fire(spec, NOW), UTC)
    assert (fire.hour, fire.minute) == (7, 0)  # 09:00 in Paris is 07:00 UTC in summer


def test_every_fires_first_one_interval_after_it_is_added() -> None:
    spec = parse_spec("every", "10m", now=NOW)
    assert spec.interval_s == 600
    assert first_fire(spec, NOW) == NOW + 600


def test_an_at_schedule_fires_once_at_its_time_naive_meaning_utc() -> None:
    spec = parse_spec("at", "2030-06-15T13:00", now=NOW)
    assert first_fire(spec, NOW) == NOW + 3600
    assert next_fire(spec, NOW + 3600, NOW + 3601) is None
    assert parse_time("2030-06-15T15:00+02:00") == NOW + 3600
    assert parse_time("2030-06-15T13:00:00Z") == NOW + 3600


def test_a_stored_at_schedule_in_the_past_still_loads() -> None:
    assert load_spec("at", "2001-01-01T00:00", "UTC").at < NOW


@pytest.mark.parametrize(
    ("kind", "text", "tz", "option"),
    [
        ("cron", "61 * * * *", "UTC", "--cron"),
        ("cron", "every day", "UTC", "--cron"),
        ("cron", "", "UTC", "--cron"),
        ("cron", "0 0 31 2 *", "UTC", "--cron"),
        ("every", "0s", "UTC", "--every"),
        ("every", "-5m", "UTC", "--every"),
        ("every", "5 parsecs", "UTC", "--every"),
        ("at", "2001-01-01T00:00", "UTC", "--at"),
        ("at", "tomorrow", "UTC", "--at"),
        ("cron", "0 9 * * *", "Mars/Olympus", "--tz"),
    ],
)
def test_a_bad_spec_is_one_line_naming_its_option(
    kind: str, text: str, tz: str, option: str
) -> None:
    with pytest.raises(ScheduleSpecInvalid) as caught:
        parse_spec(kind, text, tz, now=NOW)
    message = str(caught.value)
    assert message.startswith(f"{option}: ")
    assert "\n" not in message


def test_a_tick_always_maps_to_the_same_run_id() -> None:
    assert tick_run_id("s1", NOW) == tick_run_id("s1", NOW)
    assert tick_run_id("s1", NOW) != tick_run_id("s1", NOW + 60)
    assert tick_run_id("s1", NOW) != tick_run_id("s2", NOW)
