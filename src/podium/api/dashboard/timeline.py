"""A run's timeline (Gantt) from its events: attempts, retry backoffs, waits for a signal, a
slot, a rate limit, a pause or a budget, and markers for fallbacks, compensations, skips and
cancels.

Rows follow the plan's order; a `for_each` step's instances get rows of their own (a few).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from podium.events import Event

WIDTH = 900  # drawing units of the time axis
LABEL_W = 170
ROW_H = 22
MAX_INSTANCE_ROWS = 8
# Segment kinds, each a class in the stylesheet (and a word in the legend).
KINDS = ("attempt", "failed", "backoff", "wait", "held", "throttled")


@dataclass(slots=True)
class Segment:
    kind: str
    start: float
    end: float | None
    note: str = ""


@dataclass(slots=True)
class Marker:
    kind: str  # fallback, compensated, compensation_failed, skipped, cancelled
    at: float
    note: str = ""


@dataclass(slots=True)
class Row:
    label: str
    segments: list[Segment] = field(default_factory=list)
    markers: list[Marker] = field(default_factory=list)
    open: dict[str, Segment] = field(default_factory=dict)

    def begin(self, kind: str, at: float, note: str = "") -> None:
        segment = Segment(kind, at, None, note)
        self.open[kind] = segment
        self.segments.append(segment)

    def drop(self, kind: str) -> None:
        segment = self.open.pop(kind, None)
        if segment is not None:
            self.segments.remove(segment)

    def end(self, kind: str, at: float, as_kind: str | None = None) -> None:
        segment = self.open.pop(kind, None)
        if segment is not None:
            segment.end = at
            if as_kind is not None:
                segment.kind = as_kind


@dataclass(frozen=True, slots=True)
class Bar:
    kind: str
    x: float
    y: int
    width: float
    title: str


@dataclass(frozen=True, slots=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True, slots=True)
class Timeline:
    width: int
    height: int
    labels: list[tuple[str, int]]
    bars: list[Bar]
    markers: list[Bar]
    ticks: list[Tick]
    span_s: float


def _key(event: Event) -> tuple[str, int] | None:
    step = event.payload.get("step")
    if not isinstance(step, str):
        return None
    index = event.payload.get("index", -1)
    return step, index if isinstance(index, int) else -1


def _apply(row: Row, event: Event) -> None:
    kind, at, p = event.event_type.rpartition(".")[2], event.timestamp, event.payload
    if kind == "started":
        row.end("held", at)
        row.end("backoff", at)
        row.end("wait", at)  # let through by a limit after waiting for a slot
        row.begin("attempt", at, f"attempt {p.get('attempt', '')}".strip())
    elif kind == "waiting" and p.get("for") == "slot":
        row.drop("attempt")  # it had not called out yet: the wait is what it did
        row.begin("wait", at, "waiting for a concurrency slot or a rate limit")
    elif kind == "waited" and p.get("guard") != "limits":  # limits: the slot wait above
        waited = float(p.get("waited_s") or 0.0)
        row.segments.append(Segment("wait", at - waited, at, f"waited for {p.get('guard')}"))
    elif kind == "retrying":
        row.end("attempt", at, "failed")
        delay = float(p.get("delay_s") or 0.0)
        row.segments.append(Segment("backoff", at, at + delay, f"backoff {delay:g}s"))
    elif kind in ("completed", "failed", "cancelled"):
        row.end("attempt", at, "failed" if kind == "failed" else None)
        for waiting in ("wait", "throttled", "held"):
            row.end(waiting, at)
        if kind == "cancelled":
            row.markers.append(Marker("cancelled", at))
    elif kind == "waiting":
        row.begin("wait", at, f"waiting for signal {p.get('signal', '')}")
    elif kind == "held":
        row.begin("held", at, "held by a pause")
    elif kind == "throttled":
        row.begin("throttled", at, f"budget {p.get('scope', '')}")
    elif kind in ("fallback", "compensated", "compensation_failed", "skipped"):
        row.markers.append(Marker(kind, at, str(p.get("error") or "")))


def rows_of(order: Sequence[str], events: Iterable[Event]) -> list[Row]:
    rows: dict[tuple[str, int], Row] = {(s, -1): Row(s) for s in order}
    for event in events:
        key = _key(event)
        if key is None or not event.event_type.startswith("agent.task."):
            continue
        step, index = key
        if (step, -1) not in rows:
            continue
        row = rows.get(key)
        if row is None:
            row = rows[key] = Row(f"{step}[{index}]")
        _apply(row, event)
    ordered: list[Row] = []
    for step in order:
        ordered.append(rows[(step, -1)])
        instances = sorted((k[1], r) for k, r in rows.items() if k[0] == step and k[1] >= 0)
        ordered.extend(r for _, r in instances[:MAX_INSTANCE_ROWS])
    return ordered


def timeline(order: Sequence[str], events: Sequence[Event], now: float) -> Timeline:
    rows = rows_of(order, events)
    start = min((e.timestamp for e in events), default=now)
    ends = [s.end for r in rows for s in r.segments if s.end is not None]
    last = max([*ends, *(e.timestamp for e in events)], default=now)
    if any(s.end is None for r in rows for s in r.segments):
        last = max(last, now)  # still going: open bars reach to now
    span = max(last - start, 1e-3)
    scale = WIDTH / span
    bars: list[Bar] = []
    markers: list[Bar] = []
    labels: list[tuple[str, int]] = []
    for i, row in enumerate(rows):
        y = 20 + i * ROW_H
        labels.append((row.label, y))
        for s in row.segments:
            end = s.end if s.end is not None else last
            bars.append(Bar(s.kind, LABEL_W + (s.start - start) * scale, y + 4,
                            max((end - s.start) * scale, 1.5), f"{s.note} {end - s.start:.3f}s"))
        for m in row.markers:
            markers.append(Bar(m.kind, LABEL_W + (m.at - start) * scale, y + 2, 0,
                               f"{m.kind} {m.note}".strip()))
    ticks = [Tick(LABEL_W + WIDTH * k / 4, f"{span * k / 4:.2f}s") for k in range(5)]
    return Timeline(LABEL_W + WIDTH + 50, 30 + len(rows) * ROW_H, labels, bars, markers,
                    ticks, span)
