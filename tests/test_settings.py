"""One settings loader: `Settings()` reads PODIUM_*, the control config file and the pricing file.

The SDK, the CLI and an embedding engine all get the same: here through `podium.run`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import podium
from podium.cli.app import app
from podium.errors import PodiumError, WorkflowInvalid
from podium.settings import Settings

# A budget of $1 a day, and a model whose 10 input tokens cost $10: only both together refuse.
CONFIG = "[budgets]\ndaily_usd = 1.0\n[resources]\ncpu = 3\n"
PRICES = "[models.house-model]\ninput = 1000000\noutput = 0\n"
SPENDER = {
    "name": "spender",
    "steps": {"ask": {"kind": "sim", "model": "house-model", "tokens": {"input": 10, "output": 0}}},
}


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PODIUM_CONFIG and PODIUM_PRICING_FILE pointing at files in `tmp_path`, and a store."""
    (tmp_path / "podium.toml").write_text(CONFIG)
    (tmp_path / "prices.toml").write_text(PRICES)
    monkeypatch.setenv("PODIUM_CONFIG", str(tmp_path / "podium.toml"))
    monkeypatch.setenv("PODIUM_PRICING_FILE", str(tmp_path / "prices.toml"))
    monkeypatch.setenv("PODIUM_STORE", f"sqlite:///{tmp_path / 'podium.db'}")
    return tmp_path


def test_settings_read_the_config_file_and_the_pricing_file(files: Path) -> None:
    settings = Settings()
    assert settings.control.resources.cpu == 3
    assert settings.control.budgets.daily_usd == 1.0
    assert settings.control.pricing.price("house-model") is not None


def test_an_override_variable_wins_over_the_config_file(
    files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PODIUM_RESOURCES__CPU", "5")
    assert Settings().control.resources.cpu == 5


def test_the_sdk_run_honours_podium_config_and_podium_pricing_file(files: Path) -> None:
    summary = podium.run(podium.parse_workflow(SPENDER, "<sdk>"))
    assert summary.status == "failed"
    assert "budget_exceeded" in str(summary.error)


def test_without_the_files_the_same_run_succeeds(
    files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PODIUM_PRICING_FILE")  # unpriced, the sim model costs nothing
    assert podium.run(podium.parse_workflow(SPENDER, "<sdk>")).status == "succeeded"


def test_sdk_validation_prices_models_from_the_pricing_file(
    files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asker = {"name": "asker", "steps": {"ask": {"kind": "llm", "model": "house-model",
                                                "prompt": "hi"}}}
    assert podium.parse_workflow(asker).steps["ask"].action.kind == "llm"
    monkeypatch.delenv("PODIUM_PRICING_FILE")
    with pytest.raises(WorkflowInvalid, match="no price for model 'house-model'"):
        podium.parse_workflow(asker)


@pytest.mark.parametrize(
    ("variable", "name", "text", "message"),
    [
        ("PODIUM_PRICING_FILE", "prices.toml", "[models.x]\ninput = -1\noutput = 0\n",
         "models.x.input: a price cannot be negative"),
        ("PODIUM_PRICING_FILE", "absent.toml", None, "cannot read the pricing file"),
        ("PODIUM_CONFIG", "podium.toml", "[budgets\n", "not valid TOML"),
        ("PODIUM_CONFIG", "podium.toml", "[resources]\ncpu = -1\n", "resources.cpu"),
    ],
)
def test_a_bad_file_is_one_error_line_naming_it(
    files: Path, monkeypatch: pytest.MonkeyPatch, variable: str, name: str, text: str | None,
    message: str,
) -> None:
    path = files / name
    if text is not None:
        path.write_text(text)
    monkeypatch.setenv(variable, str(path))
    with pytest.raises(PodiumError) as caught:
        Settings()
    assert str(path) in str(caught.value) and message in str(caught.value)
    result = CliRunner().invoke(app, ["queue"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(path) in lines[0], lines
    assert message in lines[0]
