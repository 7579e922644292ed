"""A call the llm response cache answers costs nothing, so it takes no budget hold: a run
budget with room for one paid call lets any number of cached repeats through."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from budget_support import chain, engine_on, fake_providers

from podium.settings import Settings
from podium.store import Store

fakes = fake_providers()
KEYS = {"OPENAI_API_KEY": fakes.OPENAI_KEY}
CALL_USD = (2 * 2.50 + 1 * 10.00) / 1e6  # gpt-4o: "say: abc", max_tokens 1 (as test_budgets)


@pytest.fixture
def server() -> Iterator[Any]:
    with fakes.running() as srv:
        yield srv


async def test_cached_repeats_take_no_budget_hold_and_are_not_refused(
    store: Store, server: Any
) -> None:
    step = {"kind": "llm", "model": "gpt-4o", "base_url": f"{server.url}/v1",
            "prompt": "say: abc", "max_tokens": 1, "cache": "1h", "retry": {"attempts": 1}}
    wf = chain("cached-chain", 4, step, budget={"usd": CALL_USD * 1.5})
    async with engine_on(store, Settings(poll_interval_s=0.02, lease_s=5), **KEYS) as engine:
        summary = await engine.run(wf)
    assert summary.status == "succeeded", {k: s.error for k, s in summary.steps.items()}
    assert len(server.requests) == 1
    assert [summary.steps[f"s{i}"].output["cached"] for i in range(4)] == [False] + [True] * 3
    assert summary.cost_usd == pytest.approx(CALL_USD)
