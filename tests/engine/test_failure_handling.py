"""Failure handling: retry → fallback → optional/degraded → fail, cancel, compensate, DLQ."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import steplib
from steplib import make_workflow

from podium.bus.base import Bus
from podium.engine.engine import Engine
from podium.engine.rules import backoff_s
from podium.errors import StoreError
from podium.model.workflow import RetryPolicy
from podium.settings import Settings
from podium.store.base import Store


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    steplib.reset()
    yield


def py(fn: str, attempts: int = 1, **inp: object) -> dict[str, object]:
    return {
        "kind": "python",
        "call": f"steplib:{fn}",
        "input": inp,
        "retry": {"attempts": attempts, "backoff": "1ms", "jitter": 0},
    }


async def test_a_flaky_step_is_retried_until_it_succeeds(engine: Engine) -> None:
    wf = make_workflow({"a": py("flaky", attempts=3, name="a", failures=2)})
    summary = await engine.run(wf)
    assert summary.status == "succeeded"
    assert summary.steps["a"].attempts == 3
    assert steplib.CALLS["a"] == 3


async def test_retries_are_spent_then_the_fallback_is_used(engine: Engine) -> None:
    wf = make_workflow(
        {
            "a": {
                **py("fail", attempts=2, name="a"),
                "fallback": {"kind": "sim", "output": "plan b"},
            },
            "b": {**py("echo", got="{{ steps.a.output }}"), "needs": ["a"]},
        }
    )
    summary = await engine.run(wf)
    assert summary.status == "degraded"
    assert summary.steps["a"].status == "succeeded"
    assert summary.steps["a"].fallback_used is True
    assert summary.steps["a"].attempts == 2
    assert summary.steps["b"].output == {"got": "plan b"}


async def test_non_retryable_errors_skip_the_remaining_attempts(engine: Engine) -> None:
    wf = make_workflow({"a": {**py("never_retry", attempts=5, name="a"), "optional": True}})
    summary = await engine.run(wf)
    assert steplib.CALLS["a"] == 1
    assert summary.steps["a"].status == "failed"
    assert "cannot succeed" in (summary.steps["a"].error or "")


async def test_retry_after_replaces_the_backoff(engine: Engine) -> None:
    wf = make_workflow(
        {
            "a": {
                **py("retry_after", attempts=2, name="a", after=0.2),
                "retry": {"attempts": 2, "backoff": "30s"},
            }
        }
    )
    summary = await engine.run(wf)
    assert summary.status == "succeeded"
    assert summary.duration_s is not None and 0.2 <= summary.duration_s < 5


def test_backoff_grows_exponentially_and_is_capped() -> None:
    policy = RetryPolicy(attempts=10, backoff="1s", factor=2, max_backoff="5s", jitter=0)
    assert [backoff_s(policy, n) for n in (1, 2, 3, 4)] == [1, 2, 4, 5]
    jittered = RetryPolicy(backoff="1s", jitter=0.2)
    assert all(0.8 <= backoff_s(jittered, 1) <= 1.2 for _ in range(100))


async def test_an_optional_failure_degrades_the_run(engine: Engine) -> None:
    wf = make_workflow(
        {
            "a": {**py("fail", name="a"), "optional": True},
            "b": py("ok", name="b"),
        }
    )
    summary = await engine.run(wf)
    assert summary.status == "degraded"
    assert summary.steps["a"].status == "failed"


async def test_a_failure_cancels_running_steps_and_compensates_in_reverse_order(
    engine: Engine, store: Store
) -> None:
    undo = {"kind": "python", "call": "steplib:ok"}
    wf = make_workflow(
        {
            "first": {
                **py("ok", name="first"),
                "compensate": {**undo, "input": {"name": "undo-first"}},
            },
            "second": {
                **py("ok", name="second"),
                "needs": ["first"],
                "compensate": {**undo, "input": {"name": "undo-second"}},
            },
            "slow": {
                **py("slow", name="slow", seconds=5),
                "needs": ["first"],
                "compensate": {**undo, "input": {"name": "undo-slow"}},
            },
            "boom": {**py("fail", name="boom"), "needs": ["second"]},
            "after": {**py("ok", name="after"), "needs": ["boom"]},
        }
    )
    summary = await engine.run(wf)
    assert summary.status == "compensated"
    assert summary.steps["slow"].status == "cancelled"
    assert summary.steps["after"].status == "skipped"
    assert summary.steps["first"].status == "compensated"
    assert summary.steps["second"].status == "compensated"
    undos = [n for n in steplib.ORDER if n.startswith("undo-")]
    assert undos == ["undo-second", "undo-first"]
    entry = await store.get_dlq(summary.run_id)
    assert entry is not None and set(entry.failed_steps) == {"slow", "boom"}


async def test_a_failed_compensation_is_recorded_and_the_others_still_run(engine: Engine) -> None:
    wf = make_workflow(
        {
            "a": {
                **py("ok", name="a"),
                "compensate": {"kind": "python", "call": "steplib:ok", "input": {"name": "undo-a"}},
            },
            "b": {
                **py("ok", name="b"),
                "needs": ["a"],
                "compensate": {
                    "kind": "python",
                    "call": "steplib:fail",
                    "input": {"name": "undo-b"},
                },
            },
            "c": {**py("fail", name="c"), "needs": ["b"]},
        }
    )
    summary = await engine.run(wf)
    assert summary.status == "failed"
    assert summary.steps["a"].status == "compensated"
    assert summary.steps["b"].status == "succeeded"
    assert "undo-b failed" in (summary.steps["b"].compensation_error or "")
    assert steplib.CALLS["undo-b"] == 1  # compensations retry with the step's policy: 1 here


async def test_a_failed_run_with_nothing_to_compensate_ends_failed_in_the_dlq(
    engine: Engine, store: Store
) -> None:
    wf = make_workflow({"a": py("fail", name="a")})
    summary = await engine.run(wf)
    assert summary.status == "failed"
    assert "step a failed" in (summary.error or "")
    entry = await store.get_dlq(summary.run_id)
    assert entry is not None and entry.failed_steps == ("a",)


async def test_only_cleanup_steps_start_after_a_failure(engine: Engine) -> None:
    wf = make_workflow(
        {
            "boom": py("fail", name="boom"),
            "notify": {**py("ok", name="notify"), "needs": ["boom"], "trigger": "one_failed"},
            "tidy": {**py("ok", name="tidy"), "needs": ["boom"], "trigger": "all_done"},
            "next": {**py("ok", name="next"), "needs": ["boom"], "trigger": "none_failed"},
        }
    )
    summary = await engine.run(wf)
    assert summary.status == "failed"
    assert {k: v.status for k, v in summary.steps.items()} == {
        "boom": "failed",
        "notify": "succeeded",
        "tidy": "succeeded",
        "next": "skipped",
    }


async def test_replay_resumes_from_the_failed_step_and_reuses_succeeded_outputs(
    engine: Engine, store: Store
) -> None:
    wf = make_workflow(
        {
            "a": py("ok", name="a"),
            "b": {**py("flaky", name="b", failures=1), "needs": ["a"]},
        }
    )
    first = await engine.run(wf)
    assert first.status == "failed"
    await engine.replay(first.run_id)
    second = await engine.wait(first.run_id)
    assert second.status == "succeeded"
    assert steplib.CALLS == {"a": 1, "b": 2}
    assert second.steps["a"].output == first.steps["a"].output
    assert await store.get_dlq(first.run_id) is None


async def test_a_per_attempt_timeout_abandons_the_attempt_and_retries(engine: Engine) -> None:
    wf = make_workflow(
        {"a": {**py("slow", attempts=2, name="a", seconds=10), "timeout": "50ms", "optional": True}}
    )
    summary = await engine.run(wf)
    assert steplib.CALLS["a"] == 2
    assert summary.steps["a"].status == "failed"
    assert "timed out after 0.05s" in (summary.steps["a"].error or "")


async def test_a_sync_body_past_its_timeout_is_abandoned(engine: Engine) -> None:
    wf = make_workflow(
        {
            "a": {
                **py("sync_sleep", name="a", seconds=0.5),
                "timeout": "50ms",
                "fallback": {"kind": "sim", "output": "fb"},
            }
        }
    )
    summary = await engine.run(wf)
    assert summary.steps["a"].output == "fb"
    assert summary.duration_s is not None and summary.duration_s < 0.45


async def test_a_run_past_its_timeout_ends_timed_out(engine: Engine) -> None:
    wf = make_workflow({"a": py("slow", name="a", seconds=10)}, timeout="100ms")
    summary = await engine.run(wf)
    assert summary.status == "timed_out"
    assert summary.steps["a"].status == "cancelled"


async def test_cancel_stops_running_steps_and_compensates(engine: Engine) -> None:
    wf = make_workflow(
        {
            "a": {
                **py("ok", name="a"),
                "compensate": {"kind": "python", "call": "steplib:ok", "input": {"name": "undo-a"}},
            },
            "b": {**py("slow", name="b", seconds=10), "needs": ["a"]},
        }
    )
    run_id = await engine.submit(wf)
    while steplib.CALLS.get("b") is None:
        await __import__("asyncio").sleep(0.01)
    assert await engine.cancel(run_id) is True
    summary = await engine.wait(run_id)
    assert summary.status == "cancelled"
    assert summary.steps["b"].status == "cancelled"
    assert summary.steps["a"].status == "compensated"
    assert steplib.CALLS["undo-a"] == 1


async def test_every_attempt_gets_the_same_idempotency_key(engine: Engine) -> None:
    wf = make_workflow({"a": py("with_ctx", attempts=2, name="a")})
    summary = await engine.run(wf)
    assert [f"{summary.run_id}/a", f"{summary.run_id}/a"] == steplib.KEYS
    assert summary.steps["a"].output == {
        "key": f"{summary.run_id}/a",
        "attempt": 2,
        "run": summary.run_id,
    }


async def test_for_each_keeps_item_order_and_bounds_parallelism(engine: Engine) -> None:
    wf = make_workflow(
        {
            "src": py("ok", name="src", value=[3, 1, 2, 5, 4]),
            "each": {
                "kind": "python",
                "call": "steplib:tracked",
                "needs": ["src"],
                "for_each": "{{ steps.src.output }}",
                "max_parallel": 2,
                "input": {"name": "item-{{ item }}-{{ index }}"},
            },
        }
    )
    summary = await engine.run(wf)
    assert summary.status == "succeeded"
    assert steplib.CONCURRENT["peak"] == 2
    assert [o["name"] for o in summary.steps["each"].output] == [
        "item-3-0",
        "item-1-1",
        "item-2-2",
        "item-5-3",
        "item-4-4",
    ]
    assert summary.steps["each"].instances is not None and len(summary.steps["each"].instances) == 5


async def test_for_each_over_a_non_list_fails_the_step(engine: Engine) -> None:
    wf = make_workflow(
        {
            "src": py("ok", name="src", value={"not": "a list"}),
            "each": {"kind": "sim", "needs": ["src"], "for_each": "{{ steps.src.output }}"},
        }
    )
    summary = await engine.run(wf)
    assert summary.status == "failed"
    assert "did not give a list" in (summary.steps["each"].error or "")


async def test_an_empty_for_each_succeeds_with_an_empty_list(engine: Engine) -> None:
    wf = make_workflow({"each": {"kind": "sim", "for_each": [], "output": 1}})
    summary = await engine.run(wf)
    assert summary.steps["each"].output == []


async def test_a_store_failure_ends_waits_with_the_error_instead_of_hanging(
    store: Store, bus: Bus, settings: Settings
) -> None:
    async with Engine(store, bus, settings) as engine:
        run_id = await engine.submit(make_workflow({"a": py("slow", name="a", seconds=0.2)}))
        await store.__aexit__(None, None, None)  # the database went away under the engine
        with pytest.raises(StoreError, match="closed"):
            await asyncio.wait_for(engine.wait_done(run_id), 5)
