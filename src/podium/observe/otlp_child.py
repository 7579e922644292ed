"""The span export process: reads compact spans on stdin, encodes them as OTLP protobuf and
posts them over HTTP, so that the engine's process never encodes or sends a span.

It runs as a script (`python -P otlp_child.py`), importing only the standard library and
opentelemetry, not podium: it starts in a tenth of the time and memory an engine process does.
The engine's end is observe/export.py.

Wire format: frames of a 4-byte big-endian length and a `marshal`led value (both ends run the
same interpreter). The first frame is the resource's attributes (a dict); each later one a
list of spans, each a plain tuple laid out as `SPAN_FIELDS` says. End of input: export what is
left and exit. It writes one line, `ready`, on stdout once it is set up.
"""

from __future__ import annotations

import logging
import marshal
import struct
import sys
from collections.abc import Iterator, Sequence
from typing import IO, Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

SPAN_FIELDS = (
    "trace_id", "span_id", "parent_id", "remote_parent", "flags", "name", "kind", "start_ns",
    "end_ns", "attributes", "events", "error",
)  # parent_id 0: a root; kind: OTLP's SpanKind; error: the status message (None: UNSET)
HEADER = struct.Struct(">I")
MAX_FRAME = 64 * 1024 * 1024
_HAS_IS_REMOTE, _IS_REMOTE = 0x100, 0x200  # SpanFlags
_STATUS_ERROR = 2
_INT64 = (-(2**63), 2**63 - 1)

log = logging.getLogger("podium.span_export")


def frame(value: Any) -> bytes:
    data = marshal.dumps(value)
    return HEADER.pack(len(data)) + data


def frames(stream: IO[bytes]) -> Iterator[Any]:
    """The values of the frames on `stream`, until its end (a torn last frame is dropped)."""
    while True:
        header = stream.read(HEADER.size)
        if len(header) < HEADER.size:
            return
        (size,) = HEADER.unpack(header)
        if size > MAX_FRAME:
            raise ValueError(f"span frame of {size} bytes: the stream is corrupt")
        data = stream.read(size)
        if len(data) < size:
            return
        yield marshal.loads(data)


def _set(target: AnyValue, value: Any) -> None:
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, str):
        target.string_value = value
    elif isinstance(value, int) and _INT64[0] <= value <= _INT64[1]:
        target.int_value = value
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, list | tuple):
        values = target.array_value.values
        for item in value:
            _set(values.add(), item)
    else:
        target.string_value = str(value)


def _attributes(target: Any, attributes: dict[str, Any]) -> None:
    for key, value in attributes.items():
        if value is not None:
            _set(target.add(key=key).value, value)


def encode(resource: dict[str, Any], spans: Sequence[tuple[Any, ...]]) -> bytes:
    """An ExportTraceServiceRequest of `spans` (tuples laid out as SPAN_FIELDS), serialized."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    _attributes(resource_spans.resource.attributes, resource)
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = "podium"
    out = scope_spans.spans
    for (trace_id, span_id, parent_id, remote, flags, name, kind, start_ns, end_ns, attributes,
         events, error) in spans:
        span = out.add(
            trace_id=trace_id.to_bytes(16, "big"), span_id=span_id.to_bytes(8, "big"),
            name=name, kind=kind, start_time_unix_nano=start_ns, end_time_unix_nano=end_ns,
            flags=flags | _HAS_IS_REMOTE | (_IS_REMOTE if remote else 0),
        )
        if parent_id:
            span.parent_span_id = parent_id.to_bytes(8, "big")
        _attributes(span.attributes, attributes)
        for event_name, event_attributes, ts in events:
            event = span.events.add(name=event_name, time_unix_nano=ts)
            _attributes(event.attributes, event_attributes)
        if error is not None:
            span.status.code = _STATUS_ERROR
            span.status.message = error
    data: bytes = request.SerializeToString()
    return data


def main(stream: IO[bytes], out: IO[bytes]) -> int:
    logging.basicConfig(format="podium span export: %(message)s", level=logging.WARNING)
    # Endpoint, headers, timeout, compression, certificates, retries: the exporter reads the
    # OTEL_* variables. Its HTTP client takes the bytes encoded here; opentelemetry is pinned,
    # and the OTLP tests decode what it sends.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    exporter = OTLPSpanExporter()
    out.write(b"ready\n")  # set up: what the engine's end waits for in `ready`
    out.flush()
    incoming = frames(stream)
    resource = next(incoming, None)
    if not isinstance(resource, dict):
        return 0
    try:
        for spans in incoming:
            try:
                data = encode(resource, spans)
            except Exception:  # a span that does not encode costs its batch, not the process
                log.exception("a batch of %d spans could not be encoded", len(spans))
                continue
            exporter._client.export(data)
    finally:
        exporter.shutdown()  # type: ignore[no-untyped-call]
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.stdin.buffer, sys.stdout.buffer))
