"""The span export process: spans handed over as tuples arrive at an OTLP/HTTP receiver as the
protobuf a collector decodes; a dead export process never blocks or breaks the engine."""

from __future__ import annotations

import enum
import os
import signal
from collections.abc import Iterator

import pytest
from clocklib import eventually
from tracelib import Receiver, receiving

from podium.observe.export import ExportProcess
from podium.observe.sinks import KIND_CLIENT, KIND_INTERNAL, SpanTuple
from podium.observe.tracing import Tracing

TRACE = 0x0AF7651916CD43DD8448EB211C80319C
ROOT, CHILD, GIVEN = 0x1111111111111111, 0x2222222222222222, 0xB7AD6B7169203331


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as server:
        yield server


def _env(receiver: Receiver, **extra: str) -> dict[str, str]:
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_SERVICE_NAME": "export-test",
            **extra}


def _spans() -> list[SpanTuple]:
    attributes = {"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 12,
                  "gen_ai.response.finish_reasons": ["stop"], "podium.ok": True, "x": 0.5}
    return [
        (TRACE, ROOT, GIVEN, True, 1, "invoke_workflow w", KIND_INTERNAL, 100, 900,
         {"podium.run_id": "r1"}, [("resumed", {"podium.owner": "b"}, 300)], None),
        (TRACE, CHILD, ROOT, False, 1, "chat gpt-4o-mini", KIND_CLIENT, 200, 400, attributes,
         [], "boom"),
    ]


async def test_spans_reach_the_receiver_as_otlp_protobuf(receiver: Receiver) -> None:
    export = ExportProcess({"service.name": "export-test"}, _env(receiver))
    assert export.ready(30)
    for span in _spans():
        export.emit(span)
    export.shutdown()  # flushes: what was queued is sent before it returns
    spans = {s.name: s for s in receiver.received()}
    root, chat = spans["invoke_workflow w"], spans["chat gpt-4o-mini"]
    assert root.trace_id == f"{TRACE:032x}" and root.span_id == f"{ROOT:016x}"
    assert root.parent_span_id == f"{GIVEN:016x}" and root.service == "export-test"
    assert root.status_code == 0  # UNSET
    assert chat.parent_span_id == f"{ROOT:016x}" and chat.status_code == 2  # ERROR
    assert chat.attributes == {"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 12,
                               "gen_ai.response.finish_reasons": ["stop"], "podium.ok": True,
                               "x": 0.5}
    assert export.dropped == 0


async def test_batches_leave_as_they_fill_not_only_at_shutdown(receiver: Receiver) -> None:
    env = _env(receiver, OTEL_BSP_MAX_EXPORT_BATCH_SIZE="2", OTEL_BSP_SCHEDULE_DELAY="600000")
    export = ExportProcess({"service.name": "export-test"}, env)
    try:
        for span in _spans():
            export.emit(span)
        await eventually(lambda: len(receiver.received()) == 2, timeout_s=30)
    finally:
        export.shutdown()


async def test_a_dead_export_process_costs_spans_not_the_engine(receiver: Receiver) -> None:
    env = _env(receiver, OTEL_BSP_MAX_QUEUE_SIZE="4", OTEL_BSP_MAX_EXPORT_BATCH_SIZE="2",
               OTEL_BSP_SCHEDULE_DELAY="20")
    export = ExportProcess({"service.name": "export-test"}, env)
    assert export.ready(30)
    os.kill(export.pid, signal.SIGKILL)
    await eventually(lambda: export.dead, timeout_s=30)  # seen without a span sent
    for _ in range(50):  # never blocks: each dropped and counted
        for span in _spans():
            export.emit(span)
    export.shutdown()
    assert export.dropped == 100
    assert receiver.received() == []


async def test_a_full_queue_drops_and_counts_what_does_not_fit(receiver: Receiver) -> None:
    env = _env(receiver, OTEL_BSP_MAX_QUEUE_SIZE="4", OTEL_BSP_MAX_EXPORT_BATCH_SIZE="4")
    export = ExportProcess({"service.name": "export-test"}, env)
    for _ in range(50):  # faster than the sender drains the queue
        for span in _spans():
            export.emit(span)
    export.shutdown()
    assert export.dropped + len(receiver.received()) == 100
    assert 4 <= len(receiver.received()) < 100


def test_tracing_from_env_exports_through_the_export_process(receiver: Receiver) -> None:
    tracing = Tracing.from_env(_env(receiver))
    assert tracing is not None and isinstance(tracing.sink, ExportProcess)
    assert tracing.ready(30)
    tracing.sink.emit(_spans()[1])
    tracing.shutdown()
    (span,) = receiver.received()
    assert span.name == "chat gpt-4o-mini" and span.service == "export-test"


async def test_values_of_subclassed_types_are_exported_as_their_plain_values(
    receiver: Receiver,
) -> None:
    class Colour(enum.StrEnum):
        RED = "red"

    class Level(enum.IntEnum):
        HIGH = 3

    export = ExportProcess({"service.name": "export-test"}, _env(receiver))
    span = _spans()[1]
    attributes = {"colour": Colour.RED, "level": Level.HIGH, "things": [Colour.RED], "o": object}
    export.emit((*span[:9], attributes, [("e", {"colour": Colour.RED}, 300)], None))
    export.shutdown()
    (received,) = receiver.received()
    assert received.attributes == {"colour": "red", "level": 3, "things": ["red"],
                                   "o": str(object)}
    assert export.dropped == 0
