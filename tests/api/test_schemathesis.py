"""Property-based requests from the OpenAPI schema (schemathesis), with an admin key.

Every operation but the endless SSE stream gets bounded examples against a real uvicorn server;
no answer may be a 5xx or break the documented schema.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import schemathesis
import uvicorn
from apilib import bearer
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from podium.api.app import create_app
from podium.engine.engine import Engine

EXAMPLES_PER_OPERATION = 20
SKIPPED = {("GET", "/v1/events")}  # a stream of every event never ends: not for a fuzzer

pytestmark = pytest.mark.timeout(600)


@contextlib.asynccontextmanager
async def served(engine: Engine) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """A real server on a free loopback port, on this test's loop beside the engine."""
    app = create_app(engine)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_level="error")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}", app.openapi()
    finally:
        server.should_exit = True
        await task


def fuzz(base_url: str, spec: dict[str, Any], headers: dict[str, str]) -> list[str]:
    """Runs every operation's examples (blocking: called in a thread); the failures found."""
    schema = schemathesis.openapi.from_dict(spec)
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in SKIPPED:
            continue

        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            response = case.call(base_url=base_url, headers=headers, timeout=30)
            case.validate_response(
                response, checks=[not_a_server_error, response_schema_conformance]
            )

        try:
            check()
        except Exception as exc:  # the first failing example of this operation
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}"[:2000])
    return failures


async def test_no_generated_request_gets_a_server_error_or_an_undocumented_answer(
    engine: Engine, admin_key: str
) -> None:
    async with served(engine) as (base_url, spec):
        failures = await asyncio.to_thread(fuzz, base_url, spec, bearer(admin_key))
    assert failures == []
