"""Fixtures of the llm kind's tests: the local provider server, a runner, a host with keys.

A test module that defines a fixture of the same name uses its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from fake_providers import FakeServer, running
from llmlib import KEYS, FakeHost

from podium.steps.llm import LlmRunner


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with running() as srv:
        yield srv


@pytest.fixture
async def runner() -> AsyncIterator[LlmRunner]:
    llm = LlmRunner()
    try:
        yield llm
    finally:
        await llm.aclose()


@pytest.fixture
def host() -> FakeHost:
    return FakeHost(dict(KEYS))
