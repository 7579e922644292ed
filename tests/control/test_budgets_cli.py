"""`podium spend` and `podium budgets` as real subprocesses, and bad budget configuration."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from budget_support import add_old_spend, chain, engine_on, settings_with, sim

from podium.check import parse_workflow
from podium.control.config import load_control
from podium.errors import PodiumError, WorkflowInvalid
from podium.store import Store

CLI = [sys.executable, "-m", "podium.cli.app"]


def podium(*args: str, cwd: Path, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PODIUM_")}
    if config is not None:
        env["PODIUM_CONFIG"] = str(config)
    done = subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=60, stdin=subprocess.DEVNULL)
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    return done


def as_json(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


async def test_spend_rows_committed_with_results_show_in_podium_spend(
    store: Store, store_url: str, tmp_path: Path
) -> None:
    async with engine_on(store, settings_with()) as engine:
        await engine.run(chain("alpha", 3, sim(0.1, model="gpt-4o", tokens={"input": 4})))
        await engine.run(chain("beta", 1, sim(0.05, model="claude-sonnet-4")))
        await engine.run(chain("gratis", 2, sim(0.0)))

    by_workflow = as_json(podium("spend", "--json", "--store", store_url, cwd=tmp_path))
    assert by_workflow["by"] == "workflow"
    assert [(g["key"], g["calls"]) for g in by_workflow["groups"]] == [("alpha", 3), ("beta", 1)]
    assert by_workflow["groups"][0]["usd"] == pytest.approx(0.3)
    assert by_workflow["groups"][0]["tokens"] == {"input": 12, "output": 0}
    assert by_workflow["total"]["usd"] == pytest.approx(0.35)

    by_model = as_json(podium("spend", "--by", "model", "--workflow", "beta", "--since", "1h",
                              "--json", "--store", store_url, cwd=tmp_path))
    assert [(g["key"], g["calls"]) for g in by_model["groups"]] == [("claude-sonnet-4", 1)]


async def test_podium_budgets_shows_each_scope_against_its_window(
    store: Store, store_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "podium.toml"
    config.write_text(
        "[budgets]\ndaily_usd = 2.0\naction = \"throttle\"\n"
        "[budgets.workflows.alpha]\nhourly_usd = 0.5\n"
    )
    await add_old_spend(store, "alpha", 0.2, age_s=60)
    await add_old_spend(store, "alpha", 0.7, age_s=7200)  # out of the hour, in the day

    scopes = as_json(podium("budgets", "--json", "--store", store_url, cwd=tmp_path,
                            config=config))["scopes"]
    assert [s["scope"] for s in scopes] == ["global/daily", "workflow/alpha/hourly"]
    daily, hourly = scopes
    assert daily["spent_usd"] == pytest.approx(0.9)
    assert daily["remaining_usd"] == pytest.approx(1.1)
    assert daily["action"] == "throttle"
    assert (hourly["limit_usd"], hourly["window_s"]) == (0.5, 3600.0)
    assert hourly["spent_usd"] == pytest.approx(0.2)

    table = podium("budgets", "--store", store_url, cwd=tmp_path, config=config)
    assert table.returncode == 0 and "workflow/alpha/hourly" in table.stdout


@pytest.mark.parametrize(
    ("toml", "field"),
    [
        ("[budgets]\nhourly_usd = -1\n", "budgets.hourly_usd"),
        ("[budgets]\nwarn_at = 2\n", "budgets.warn_at"),
        ("[budgets]\naction = \"wait\"\n", "budgets.action"),
        ("[budgets.workflows.x]\ndaily_usd = -0.5\n", "budgets.workflows.x.daily_usd"),
    ],
)
def test_bad_budget_config_is_one_line_naming_the_field(
    tmp_path: Path, toml: str, field: str
) -> None:
    config = tmp_path / "podium.toml"
    config.write_text(toml)
    with pytest.raises(PodiumError, match=rf"{field}: "):
        load_control(config)

    done = podium("budgets", "--store", f"sqlite:///{tmp_path / 'p.db'}", cwd=tmp_path,
                  config=config)
    assert done.returncode == 2
    assert field in done.stderr and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("budget", "field"),
    [("{usd: -1}", "budget.usd"), ("{usd: 1, warn_at: 2}", "budget.warn_at"),
     ("{usd: 1, action: stop}", "budget.action")],
)
def test_a_bad_run_budget_is_a_validation_error_naming_the_field(
    budget: str, field: str
) -> None:
    text = f"name: w\nbudget: {budget}\nsteps:\n  a: {{kind: sim}}\n"
    with pytest.raises(WorkflowInvalid) as caught:
        parse_workflow(yaml.safe_load(text), "w.yaml")
    assert any(field in problem for problem in caught.value.problems), caught.value.problems


def test_an_llm_step_with_an_unpriced_model_is_still_a_validation_error() -> None:
    text = "name: w\nbudget: {usd: 1}\nsteps:\n  a: {kind: llm, model: my-own-llm, prompt: hi}\n"
    with pytest.raises(WorkflowInvalid, match="no price for model 'my-own-llm'"):
        parse_workflow(yaml.safe_load(text), "w.yaml")


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--by", "colour"], "--by: choose one of"), (["--since", "soon"], "--since: not a duration")],
)
def test_bad_spend_options_exit_2_with_one_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    done = podium("spend", *args, "--store", f"sqlite:///{tmp_path / 'p.db'}", cwd=tmp_path)
    assert done.returncode == 2
    assert message in done.stderr


def test_spend_with_nothing_spent_says_so(tmp_path: Path) -> None:
    done = podium("spend", "--store", f"sqlite:///{tmp_path / 'p.db'}", cwd=tmp_path)
    assert done.returncode == 0 and "nothing was spent" in done.stderr
    assert done.stdout == ""
