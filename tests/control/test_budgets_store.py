"""The spend ledger and budget holds in both stores: atomic holds, expiry, grouping."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from podium.store import Store, open_store
from podium.store.records import Batch
from podium.store.spend import BudgetHold, SpendRow, WindowScope

DAILY = WindowScope("global/daily", 0.55, 86400.0)


def hold(usd: float, *, workflow: str = "w", holder: str = "engine-a", ttl_s: float = 30.0
         ) -> BudgetHold:
    return BudgetHold(uuid.uuid4().hex, "run-1", workflow, usd, holder, time.time() + ttl_s)


def row(usd: float, *, workflow: str = "w", run_id: str = "run-1", step_id: str = "s",
        index: int = -1, ts: float | None = None, model: str | None = "gpt-4o") -> SpendRow:
    return SpendRow(run_id, step_id, index, time.time() if ts is None else ts, workflow,
                    model, 10, 20, usd)


async def test_two_stores_racing_for_the_last_dollar_place_only_what_fits(
    store: Store, store_url: str
) -> None:
    async with open_store(store_url) as other:
        results = await asyncio.gather(
            *(s.hold_budget(hold(0.1), [DAILY]) for _ in range(6) for s in (store, other))
        )

    assert sum(placed for placed, _ in results) == 5
    [usage] = await store.budget_usage([DAILY])
    assert usage.held_usd == pytest.approx(0.5)


async def test_a_hold_counts_until_released_or_expired(store: Store) -> None:
    kept, gone, dead = hold(0.2), hold(0.1), hold(0.4, holder="dead", ttl_s=-1)
    for h in (kept, gone, dead):
        placed, _ = await store.hold_budget(h, [WindowScope("global/daily", 10, 86400)])
        assert placed
    await store.release_budget_holds([gone.hold_id])

    [usage] = await store.budget_usage([DAILY])
    assert usage.held_usd == pytest.approx(0.2)  # the dead engine's hold ran out

    await store.renew_budget_holds("engine-a", time.time() - 1)  # even its own can lapse
    [usage] = await store.budget_usage([DAILY])
    assert usage.held_usd == 0


async def test_spend_in_the_window_and_holds_of_the_workflow_count_against_its_scope(
    store: Store,
) -> None:
    await store.write(Batch(spend=[
        row(0.3, workflow="a"), row(0.2, workflow="b", step_id="t"),
        row(5.0, workflow="a", step_id="old", ts=time.time() - 7200),
    ]))
    hourly_a = WindowScope("workflow/a/hourly", 0.5, 3600.0, "a")
    hourly = WindowScope("global/hourly", 0.6, 3600.0)

    placed, found = await store.hold_budget(hold(0.15, workflow="b"), [hourly, hourly_a])
    assert not placed  # 0.5 spent + 0.15 > 0.6 globally
    assert [(u.spent_usd, u.held_usd) for u in found] == [
        pytest.approx((0.5, 0.0)), pytest.approx((0.3, 0.0))
    ]
    placed, _ = await store.hold_budget(hold(0.1, workflow="b"), [hourly_a])
    assert placed  # b's hold does not count against a
    [usage] = await store.budget_usage([hourly_a])
    assert (usage.spent_usd, usage.held_usd) == (pytest.approx(0.3), 0)


async def test_a_retried_batch_writes_each_spend_row_once(store: Store) -> None:
    batch = Batch(spend=[row(0.1), row(0.2, index=0), row(0.3, index=1)])
    await store.write(batch)
    await store.write(batch)

    [group] = await store.spend_report("run", 0)
    assert (group.calls, group.usd, group.tokens_in, group.tokens_out) == (
        3, pytest.approx(0.6), 30, 60
    )


async def test_spend_groups_by_workflow_model_day_and_hour_since_a_time(store: Store) -> None:
    day = 86400 * 20000  # 2024-10-04T00:00Z
    await store.write(Batch(spend=[
        row(0.1, workflow="a", ts=day + 60), row(0.2, workflow="a", step_id="t", ts=day + 3700),
        row(0.4, workflow="b", model=None, ts=day + 86400 + 5),
    ]))

    by_workflow = {g.key: g.usd for g in await store.spend_report("workflow", 0)}
    assert by_workflow == {"a": pytest.approx(0.3), "b": pytest.approx(0.4)}
    by_model = {g.key: g.calls for g in await store.spend_report("model", 0)}
    assert by_model == {"gpt-4o": 2, "": 1}
    by_day = {g.key: g.calls for g in await store.spend_report("day", 0)}
    assert by_day == {"2024-10-04": 2, "2024-10-05": 1}
    by_hour = {g.key: g.calls for g in await store.spend_report("hour", 0, "a")}
    assert by_hour == {"2024-10-04T00:00Z": 1, "2024-10-04T01:00Z": 1}
    recent = await store.spend_report("workflow", day + 86400)
    assert [(g.key, g.calls) for g in recent] == [("b", 1)]
