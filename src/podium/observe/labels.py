"""Label values with a bounded number of distinct values, so no series set grows without end.

The first `limit` values seen are kept as they are; every later one becomes `other`.
"""

from __future__ import annotations

OTHER = "other"
MAX_LABEL_CHARS = 120  # a label value is a name, not a document


class BoundedLabel:
    """One label's values: at most `limit` distinct ones, then `other` (a workflow's name,
    a circuit's key, a step id...). Cheap on the hot path: a set lookup."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seen: set[str] = set()

    def __call__(self, value: str | None) -> str:
        if not value:
            return "none"
        if value in self._seen:
            return value
        if len(self._seen) >= self.limit or len(value) > MAX_LABEL_CHARS:
            return OTHER
        self._seen.add(value)
        return value

    @property
    def full(self) -> bool:
        return len(self._seen) >= self.limit
