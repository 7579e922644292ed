"""Durations and sizes: every form the format allows, and clear refusals of the rest."""

from __future__ import annotations

import pytest

from podium.model import parse_duration, parse_size_mib
from podium.model.units import format_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("2s", 2.0), ("5m", 300.0), ("1h", 3600.0), ("1d", 86400.0),
     ("1.5s", 1.5), (" 3s ", 3.0), ("7", 7.0), (3, 3.0), (0.5, 0.5), (0, 0.0)],
)
def test_durations_accept_units_and_plain_seconds(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["5 parsecs", "fast", "", "-1s", "1.s", "ms", True, [1], None])
def test_a_bad_duration_is_refused_with_an_example(bad: object) -> None:
    with pytest.raises(ValueError, match=r"duration"):
        parse_duration(bad)


def test_a_negative_number_of_seconds_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot be negative"):
        parse_duration(-2)


@pytest.mark.parametrize(
    ("text", "mib"),
    [("256Mi", 256.0), ("1Gi", 1024.0), ("512Ki", 0.5), ("1Ti", 1024.0 * 1024),
     (1024 * 1024, 1.0), ("1048576", 1.0), ("1M", 1_000_000 / 1024**2)],
)
def test_sizes_are_read_in_mebibytes(text: object, mib: float) -> None:
    assert parse_size_mib(text) == pytest.approx(mib)


@pytest.mark.parametrize("bad", ["lots", "1Mb", "-5Mi", False, -1])
def test_a_bad_size_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size_mib(bad)


def test_durations_are_formatted_for_people() -> None:
    assert [format_duration(s) for s in (0.25, 2, 600)] == ["250ms", "2.00s", "10.0m"]
