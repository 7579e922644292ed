"""Where finished spans go: the span export process (OTLP), or an OpenTelemetry SDK span
processor (the console exporter, an in-memory exporter in tests).

A span travels as a plain tuple laid out as `otlp_child.SPAN_FIELDS` says: cheap to build on
the event loop and to hand to another process. Only a sink that feeds the SDK turns it into an
SDK span.
"""

from __future__ import annotations

from typing import Any, Protocol

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event as SdkEvent
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

SpanEvent = tuple[str, dict[str, Any], int]  # name, attributes, time (ns)
SpanTuple = tuple[
    int, int, int, bool, int, str, int, int, int, dict[str, Any], list[SpanEvent], str | None
]
KIND_INTERNAL, KIND_CLIENT = 1, 3  # OTLP's SpanKind values

_SCOPE = InstrumentationScope("podium")
_UNSET = Status(StatusCode.UNSET)


class SpanSink(Protocol):
    def emit(self, span: SpanTuple) -> None:
        """Takes a finished span; called on the event loop, so it must not block."""

    def ready(self, timeout_s: float) -> bool:
        """Waits until spans can be exported (an export process set up); False if not."""

    def shutdown(self) -> None:
        """Exports what is left."""


class ProcessorSink:
    """Feeds an SDK span processor (spans made into ReadableSpans here, in this process)."""

    def __init__(self, processor: SpanProcessor, resource: Resource) -> None:
        self.processor = processor
        self._resource = resource

    def emit(self, span: SpanTuple) -> None:
        self.processor.on_end(readable(span, self._resource))

    def ready(self, timeout_s: float) -> bool:
        return True

    def shutdown(self) -> None:
        self.processor.shutdown()


class Fanout:
    """Every span to each of several sinks (`OTEL_TRACES_EXPORTER=otlp,console`)."""

    def __init__(self, *sinks: SpanSink) -> None:
        self.sinks = sinks

    def emit(self, span: SpanTuple) -> None:
        for sink in self.sinks:
            sink.emit(span)

    def ready(self, timeout_s: float) -> bool:
        return all(sink.ready(timeout_s) for sink in self.sinks)

    def shutdown(self) -> None:
        for sink in self.sinks:
            sink.shutdown()


def readable(span: SpanTuple, resource: Resource) -> ReadableSpan:
    """The SDK's form of a span tuple."""
    (trace_id, span_id, parent_id, remote, flags, name, kind, start_ns, end_ns, attributes,
     events, error) = span
    trace_flags = TraceFlags(flags)
    parent = SpanContext(trace_id, parent_id, remote, trace_flags) if parent_id else None
    return ReadableSpan(
        name,
        context=SpanContext(trace_id, span_id, False, trace_flags),
        parent=parent,
        resource=resource,
        attributes=attributes,
        events=[SdkEvent(n, a, ts) for n, a, ts in events],
        kind=SpanKind(kind - 1),
        status=_UNSET if error is None else Status(StatusCode.ERROR, error),
        start_time=start_ns,
        end_time=end_ns,
        instrumentation_scope=_SCOPE,
    )
