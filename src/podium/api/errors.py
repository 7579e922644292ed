"""How errors become HTTP responses: one JSON shape, one status per error class, no traceback.

Bodies read `{"error": code, "message": sentence}`; an invalid workflow adds `problems`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from podium.errors import (
    PodiumError,
    RunFinished,
    RunNotFound,
    StoreError,
    StoreUnavailable,
    WorkflowInvalid,
)


class WorkflowNotFound(PodiumError):
    """`workflow_name` names no registered workflow (that the caller may see): HTTP 404."""

    code = "workflow_not_found"

    def __init__(self, name: str, digest: str | None = None) -> None:
        which = f"{name!r} with digest {digest!r}" if digest else repr(name)
        super().__init__(
            f"no workflow {which} is registered; register its definition with"
            " POST /v1/workflows, then run it by name"
        )


class KeyNotFound(PodiumError):
    code = "key_not_found"

    def __init__(self, key_id: str) -> None:
        super().__init__(f"no unrevoked API key with id {key_id!r}; GET /v1/keys lists them")


class ErrorBody(BaseModel):
    """Every error answer: a stable code, one sentence, and for invalid workflows each problem."""

    error: str
    message: str
    problems: list[str] | None = None


# Documented on every router, so the OpenAPI schema describes the errors actually sent
# (FastAPI would otherwise document its own `{"detail": [...]}` 422 shape).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorBody, "description": "refused: see `error` and `message`"},
    "5XX": {"model": ErrorBody, "description": "the server's trouble; the log has details"},
}


class NotFound(PodiumError):
    """The DLQ entry, circuit, schedule or registered workflow a request names does not exist
    (HTTP 404); the message says which, and where to look."""

    code = "not_found"


# First match wins, so subclasses come before their parents; anything else is the client's 400.
STATUS_BY_ERROR: tuple[tuple[type[PodiumError], int], ...] = (
    (WorkflowInvalid, 422),
    (RunNotFound, 404),
    (WorkflowNotFound, 404),
    (KeyNotFound, 404),
    (NotFound, 404),
    (RunFinished, 409),
    (StoreUnavailable, 503),  # the server's trouble, not the request's: a client may retry
    (StoreError, 500),  # the server's trouble for good (a missing definition): no retry helps
)


def status_for(exc: PodiumError) -> int:
    return next((status for cls, status in STATUS_BY_ERROR if isinstance(exc, cls)), 400)


def error_response(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": code, "message": message, **extra}, status_code=status)


async def _podium_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PodiumError)
    if isinstance(exc, WorkflowInvalid):
        count = len(exc.problems)
        message = f"the workflow or its inputs are invalid: {count} problem(s)"
        return error_response(422, exc.code, message, problems=exc.problems)
    return error_response(status_for(exc), exc.code, " ".join(str(exc).split()))


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(422, "invalid_request", one_line(exc.errors()))


def one_line(errors: Sequence[Mapping[str, Any]]) -> str:
    """Where and what, never the offending value: it may be a secret the client sent."""
    return " ".join("; ".join(_problem(e) for e in errors).split()) or "invalid request"


def _problem(error: Mapping[str, Any]) -> str:
    if error.get("type") == "json_invalid":  # its loc is a character offset, not a field
        return f"body: not valid JSON ({error.get('ctx', {}).get('error', 'cannot parse')})"
    where = ".".join(str(part) for part in error.get("loc", ()))
    return f"{where}: {error.get('msg', 'invalid')}"


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    # Unknown paths and wrong methods answer in the same shape as every other error.
    assert isinstance(exc, HTTPException)
    response = error_response(exc.status_code, f"http_{exc.status_code}", str(exc.detail))
    response.headers.update(exc.headers or {})
    return response


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    # Starlette re-raises after this response, so the server log keeps the traceback.
    return error_response(500, "internal_error", "internal error; the server log has details")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(PodiumError, _podium_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)
