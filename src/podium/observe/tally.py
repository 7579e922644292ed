"""Counters and histograms as plain dicts, turned into Prometheus families at scrape time.

The engine's observer runs once per commit on the event loop: a dict update costs a tenth of
prometheus_client's `labels(...).inc()` (its label checks and lock), which showed up at
several percent of the engine's time per step.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

Key = tuple[str, ...]


class Tally:
    """A counter: one float per label tuple."""

    __slots__ = ("help", "labels", "name", "values")

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        self.name, self.help, self.labels = name, help, list(labels)
        self.values: dict[Key, float] = {}

    def inc(self, key: Key, amount: float = 1.0) -> None:
        values = self.values
        values[key] = values.get(key, 0.0) + amount

    def family(self) -> CounterMetricFamily:
        family = CounterMetricFamily(self.name, self.help, labels=self.labels)
        for key, value in list(self.values.items()):  # copied: a scrape may run on a thread
            family.add_metric(list(key), value)
        return family


class Spread:
    """A histogram: per label tuple, the count in each bucket (not cumulative) and the sum,
    in one list so that a scrape copies a consistent row."""

    __slots__ = ("bounds", "help", "labels", "name", "rows")

    def __init__(
        self, name: str, help: str, labels: Sequence[str], bounds: Sequence[float]
    ) -> None:
        self.name, self.help, self.labels = name, help, list(labels)
        self.bounds = tuple(sorted(bounds))
        self.rows: dict[Key, list[float]] = {}

    def observe(self, key: Key, value: float) -> None:
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = [0.0] * (len(self.bounds) + 2)  # buckets, +Inf, sum
        row[bisect_left(self.bounds, value)] += 1  # `le` is inclusive: bisect_left
        row[-1] += value

    def family(self) -> HistogramMetricFamily:
        family = HistogramMetricFamily(self.name, self.help, labels=self.labels)
        for key, shared in list(self.rows.items()):
            row = list(shared)
            buckets, seen = [], 0.0
            for bound, count in zip((*self.bounds, float("inf")), row[:-1], strict=True):
                seen += count
                buckets.append((floatToGoString(bound), seen))  # type: ignore[no-untyped-call]
            family.add_metric(list(key), buckets, sum_value=row[-1])
        return family
