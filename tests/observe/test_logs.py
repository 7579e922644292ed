"""Structured logs: JSON lines carry the run, step, attempt and trace ids; secrets are masked."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
import structlog

from podium.errors import PodiumError
from podium.observe.context import RunTrace, attempt_span_id
from podium.observe.logs import configure_logging, log_format
from podium.redact import Redactor

SECRET = "sk-very-secret-value"


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_run_and_trace_ids_and_mask_secrets() -> None:
    stream = io.StringIO()
    configure_logging(Redactor([SECRET]), fmt="json", stream=stream)
    log = structlog.get_logger("podium.engine")
    log.warning("step failed", run_id="run-1", step="fetch", index=-1, attempt=2,
                error=f"401 with key {SECRET}")
    log.warning("run note", run_id="run-1")
    first, second = _lines(stream)
    trace = RunTrace.of("run-1", None)
    assert first["event"] == "step failed" and first["level"] == "warning"
    assert first["run_id"] == "run-1" and first["step_id"] == "fetch" and first["attempt"] == 2
    assert first["trace_id"] == f"{trace.trace_id:032x}"
    assert first["span_id"] == f"{attempt_span_id('run-1', 'fetch', -1, 2):016x}"
    assert str(first["timestamp"]).endswith("Z")
    assert SECRET not in json.dumps(first) and "***" in str(first["error"])
    assert second["span_id"] == f"{trace.root_span_id:016x}"  # no step: the run's root span


def test_a_logged_exception_is_masked_in_json() -> None:
    stream = io.StringIO()
    configure_logging(Redactor([SECRET]), fmt="json", stream=stream)
    try:
        raise RuntimeError(f"bad key {SECRET}")
    except RuntimeError:
        structlog.get_logger("podium.engine").error("boom", run_id="r", exc_info=True)
    (line,) = _lines(stream)
    assert "RuntimeError" in str(line["exception"]) and SECRET not in stream.getvalue()


def test_text_stays_readable_and_masked() -> None:
    stream = io.StringIO()
    configure_logging(Redactor([SECRET]), fmt="text", stream=stream)
    structlog.get_logger("podium.engine").warning("step failed", run_id="r", error=SECRET)
    text = stream.getvalue()
    assert "step failed" in text and "run_id" in text and SECRET not in text
    assert not text.lstrip().startswith("{")


def test_the_format_is_checked() -> None:
    assert log_format({}) == "text"
    assert log_format({"PODIUM_LOG_FORMAT": "JSON"}) == "json"
    with pytest.raises(PodiumError, match="PODIUM_LOG_FORMAT must be text or json"):
        log_format({"PODIUM_LOG_FORMAT": "xml"})
