"""`podium resources [--json]`: pools with each engine's share, rate limits with bucket levels,
read from the store (both stores) with the capacities from podium.toml / PODIUM_* variables."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from typer.testing import CliRunner

from podium.cli.app import app
from podium.store import Store
from podium.store.pools import ShareRequest

ENV = {
    "PODIUM_RESOURCES__CPU": "4",
    "PODIUM_LIMITS__MAX_CONCURRENT": "10",
    "PODIUM_AGENTS": '{"writer": {"limits": {"rpm": 120, "max_concurrent": 3}}}',
}


def _cli(*args: str, env: dict[str, str]) -> Any:
    result = CliRunner().invoke(app, list(args), env=env)
    assert "Traceback" not in result.output
    return result


async def test_resources_lists_pools_holders_and_bucket_levels(
    store: Store, store_url: str
) -> None:
    await store.set_shares("engine-a", [ShareRequest("resource:cpu", 3, 3, 2, 4)], 30)
    await store.set_shares("engine-b", [ShareRequest("resource:cpu", 2, 2, 0, 4)], 30)
    await store.take_tokens("agent:writer:rpm", 2.0, 2.0, 1.5)
    result = await asyncio.to_thread(_cli, "resources", "--json", "--store", store_url, env=ENV)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    pools = {p["pool"]: p for p in document["pools"]}
    assert pools["resource:cpu"]["capacity"] == 4
    assert [(h["holder"], h["share"]) for h in pools["resource:cpu"]["holders"]] == [
        ("engine-a", 3), ("engine-b", 1),
    ]
    assert pools["resource:cpu"]["wanted"] == 5  # b wants 2, holds 1
    assert pools["global"]["held"] == 0 and pools["agent:writer"]["capacity"] == 3
    [rpm] = document["rate_limits"]
    assert (rpm["scope"], rpm["limit"], rpm["burst"]) == ("agent:writer", "rpm", 2.0)
    assert 0.4 <= rpm["buckets"][0]["level"] <= 2.0
    table = await asyncio.to_thread(_cli, "resources", "--store", store_url, env=ENV)
    assert table.exit_code == 0 and "resource:cpu" in table.stdout


def test_a_bad_limit_in_the_environment_is_a_usage_error_naming_the_field(
    store_url: str,
) -> None:
    result = _cli("resources", "--store", store_url,
                  env={"PODIUM_AGENTS": '{"writer": {"limits": {"max_concurrent": 0}}}'})
    assert result.exit_code == 2
    assert "agents.writer.limits.max_concurrent" in result.output
