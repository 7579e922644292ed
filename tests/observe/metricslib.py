"""Reading the Prometheus text format back: samples by name and labels, and metric names.

Imported by the metrics tests (`tests/observe` is on the path, as `steplib` is).
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Scrape:
    """One exposition, parsed: `value(name, **labels)` sums the matching samples."""

    samples: list[tuple[str, dict[str, str], float]]

    @classmethod
    def parse(cls, text: str | bytes) -> Scrape:
        body = text.decode() if isinstance(text, bytes) else text
        return cls([
            (s.name, dict(s.labels), float(s.value))
            for family in text_string_to_metric_families(body)
            for s in family.samples
        ])

    def value(self, name: str, **labels: str) -> float:
        return sum(
            v for n, lab, v in self.samples
            if n == name and all(lab.get(k) == want for k, want in labels.items())
        )

    def series(self, name: str) -> list[dict[str, str]]:
        return [lab for n, lab, _ in self.samples if n == name]

    @property
    def names(self) -> set[str]:
        return {n for n, _, _ in self.samples}
