"""Structured logs: text for a terminal, or one JSON object per line (`PODIUM_LOG_FORMAT=json`).

Every line about a run carries its `run_id` and the `trace_id`/`span_id` of its trace; secrets
are masked in both formats.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog
from opentelemetry import trace as trace_api

from podium.errors import PodiumError
from podium.observe.tracing import log_ids
from podium.redact import Redactor, structlog_processor

FORMATS = ("text", "json")


def log_format(environ: Mapping[str, str] | None = None) -> str:
    """`PODIUM_LOG_FORMAT`: text (the default) or json."""
    value = (os.environ if environ is None else environ).get("PODIUM_LOG_FORMAT", "text")
    value = value.strip().lower() or "text"
    if value not in FORMATS:
        raise PodiumError(f"PODIUM_LOG_FORMAT must be text or json, not {value!r}")
    return value


def add_trace_ids(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> Any:
    """`trace_id` and `span_id`: the active span's, else those of the run the line is about."""
    if "trace_id" in event:
        return event
    span = trace_api.get_current_span().get_span_context()
    if span.is_valid:
        event["trace_id"], event["span_id"] = f"{span.trace_id:032x}", f"{span.span_id:016x}"
        return event
    run_id = event.get("run_id")
    if isinstance(run_id, str) and run_id:
        event.update(log_ids(run_id, event.get("step_id"), event.get("index", -1),
                             event.get("attempt")))
    return event


def name_step(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> Any:
    """The engine says `step=`; a JSON line says `step_id` as a step's own lines do."""
    if "step" in event and "step_id" not in event:
        event["step_id"] = event.pop("step")
    return event


def configure_logging(
    redactor: Redactor, *, verbose: bool = False, fmt: str | None = None,
    stream: TextIO | None = None,
) -> None:
    """Logs go to stderr (stdout carries results and --json); warnings only unless verbose."""
    fmt = fmt or log_format()
    level = logging.DEBUG if verbose else logging.WARNING
    masked = structlog_processor(redactor)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.StackInfoRenderer(),
    ]
    processors: list[Any]
    if fmt == "json":
        processors = [
            *shared, name_step, add_trace_ids,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            masked,  # last before rendering: tracebacks are text by now, and masked too
            structlog.processors.JSONRenderer(sort_keys=False),
        ]
    else:
        processors = [
            masked,  # first: no later processor sees a secret
            *shared,
            structlog.dev.set_exc_info,
            structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False),
            structlog.dev.ConsoleRenderer(
                exception_formatter=structlog.dev.plain_traceback if verbose else _briefly
            ),
        ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # Looked up per logger, so a live view that swaps sys.stderr still gets the lines.
        logger_factory=lambda *_: structlog.PrintLogger(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )


def _briefly(out: TextIO, exc_info: Any) -> None:
    """A logged exception, without verbose: its one line, not its traceback."""
    exc = exc_info[1]
    out.write(f"\n{type(exc).__name__}: {' '.join(str(exc).split())} (podium -v: traceback)")
