"""`tpm`: tokens reserved from an estimate before the call, reconciled with real usage after
(excess handed back, shortfall taken as debt); which rules apply to a call. Both stores.

The store and the engine keep time by a FakeClock that is never advanced: no refill, no
background tick settling a debt while the test reads the level, so levels are exact."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from limitlib import OPENAI_KEY, counting_server, llm_workflow, settings_with

from podium.bus import open_bus
from podium.bus.transient import Transient
from podium.control.config import AgentControl
from podium.control.guard import Call, pass_guard
from podium.control.limits import estimate_tokens
from podium.engine.engine import Engine
from podium.model.workflow import Limits, Workflow
from podium.redact import Redactor
from podium.settings import Settings
from podium.store import Store

TPM = Limits(tpm=6)  # 0.1 token a second (the clock stands still: no refill at all)
BURST = 6000.0  # with burst_s 60,000 below


@pytest.fixture
def store(clocked_store: Store) -> Store:
    return clocked_store


@pytest.fixture
async def engine(store: Store) -> AsyncIterator[Engine]:
    settings = settings_with(agents={"writer": AgentControl(limits=TPM)})
    async with open_bus("memory://") as bus, Engine(
        store, bus, settings, secrets={"OPENAI_API_KEY": OPENAI_KEY}
    ) as running:
        running.control.buckets.burst_s = BURST / 0.1
        yield running


def _call(workflow: Workflow) -> Call:
    step = workflow.steps["write"]
    return Call("run-1", workflow.name, step, -1, 1, step.action, {}, primary=True)


async def _level(store: Store) -> float:
    [bucket] = await store.list_buckets()
    assert bucket.key == "agent:writer:tpm"
    return bucket.tokens


async def test_tpm_reserves_the_estimate_and_keeps_only_what_was_used(
    engine: Engine, store: Store
) -> None:
    workflow = llm_workflow("http://unused", (7, 3), 1000)
    call = _call(workflow)
    estimate = estimate_tokens(call.action)
    assert estimate == len("usage 7 3") // 4 + 1000
    await pass_guard(engine.control.limits, call)
    assert await _level(store) == BURST - estimate  # reserved
    call.tokens_in, call.tokens_out = 7, 3
    engine.control.limits.exit(call, "ok")
    await engine.control.buckets.close()  # hands the unused reservation back now
    assert await _level(store) == BURST - 10


async def test_usage_above_the_estimate_is_taken_as_debt(engine: Engine, store: Store) -> None:
    with counting_server() as server:
        low = await engine.run(llm_workflow(server.url, (7, 3), 1000))
        high = await engine.run(llm_workflow(server.url, (500, 500), 1))  # estimate 3
    await engine.control.buckets.close()
    assert (low.status, high.status) == ("succeeded", "succeeded")
    assert (high.tokens.input, high.tokens.output) == (500, 500)
    assert await _level(store) == BURST - 1010


async def test_a_refused_call_gives_its_tokens_back(engine: Engine, store: Store) -> None:
    call = _call(llm_workflow("http://unused", (1, 1), 500))
    await pass_guard(engine.control.limits, call)
    engine.control.limits.exit(call, "refused")
    await engine.control.buckets.close()
    assert await _level(store) == BURST


def test_operator_limits_win_over_the_steps_and_providers_add_their_own(store: Store) -> None:
    settings = Settings(control=settings_with(
        agents={"writer": AgentControl(limits=Limits(max_concurrent=2))},
        providers={"openai": Limits(rpm=60)},
    ).control)
    workflow = llm_workflow("http://unused", (1, 1), 10).model_copy()
    step = workflow.steps["write"].model_copy(
        update={"limits": Limits(max_concurrent=9, tpm=100, key="{{ inputs.t }}")}
    )
    engine = Engine(store, _NoBus(), settings)
    call = Call("r", "tokens", step, -1, 1, step.action, {"inputs": {"t": "acme"}}, primary=True)
    agent, provider = engine.control.limits.rules(call)
    assert agent.scope == "agent:writer"
    assert (agent.limits.max_concurrent, agent.limits.tpm) == (2, 100)
    assert agent.name(call) == "agent:writer[acme]"
    assert provider.name(call) == "provider:openai"
    fallback = Call("r", "tokens", step, -1, 1, step.action, {}, primary=False)
    assert [r.scope for r in engine.control.limits.rules(fallback)] == ["provider:openai"]


class _NoBus:
    """An Engine is built here only to read its control plane; it never starts."""

    distributed = False

    def transient(self, redactor: Redactor) -> Transient:
        return Transient(redactor)
