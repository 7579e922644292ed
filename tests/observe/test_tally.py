"""The plain-dict counters and histograms render as Prometheus families with exact values."""

from __future__ import annotations

from collections.abc import Iterator

from metricslib import Scrape
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from podium.observe.tally import Spread, Tally


class _Both(Collector):
    def __init__(self, *metrics: Tally | Spread) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        for metric in self.metrics:
            yield metric.family()


def _scrape(*metrics: Tally | Spread) -> Scrape:
    registry = CollectorRegistry()
    registry.register(_Both(*metrics))
    return Scrape.parse(generate_latest(registry))


def test_a_histogram_bucket_holds_values_up_to_and_including_its_bound() -> None:
    spread = Spread("t_seconds", "t", ["kind"], [0.1, 1.0])
    for value in (0.05, 0.1, 0.5, 1.0, 7.0):
        spread.observe(("a",), value)
    scrape = _scrape(spread)
    assert scrape.value("t_seconds_bucket", kind="a", le="0.1") == 2
    assert scrape.value("t_seconds_bucket", kind="a", le="1.0") == 4
    assert scrape.value("t_seconds_bucket", kind="a", le="+Inf") == 5
    assert scrape.value("t_seconds_count", kind="a") == 5
    assert scrape.value("t_seconds_sum", kind="a") == 8.65


def test_a_counter_adds_up_per_label_tuple() -> None:
    tally = Tally("t_calls", "t", ["workflow", "status"])
    tally.inc(("w", "ok"))
    tally.inc(("w", "ok"), 2.5)
    tally.inc(("w", "failed"))
    scrape = _scrape(tally)
    assert scrape.value("t_calls_total", workflow="w", status="ok") == 3.5
    assert scrape.value("t_calls_total", workflow="w") == 4.5
