"""The control configuration: podium.toml + PODIUM_<SECTION>__<KEY>, bad values named.

Bad configuration must be one clear line per problem and exit 2 on the CLI.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from podium.cli.app import app
from podium.control.config import load_control
from podium.errors import PodiumError

EXAMPLE = Path(__file__).parents[2] / "examples" / "podium.toml"


def test_the_example_file_loads_with_every_section() -> None:
    config = load_control(EXAMPLE)
    assert config.resources.memory_mib == 16 * 1024
    assert config.agents["writer"].limits is not None
    assert config.agents["writer"].limits.rpm == 60
    assert config.agents["writer"].circuit is not None
    assert config.agents["writer"].circuit.cooldown_s == 30
    assert config.providers["openai"].tpm == 200000
    assert config.queue.ttl.high == 300
    assert config.budgets.workflows["content-pipeline"].daily_usd == 2.0


def test_the_environment_wins_over_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PODIUM_RESOURCES__CPU", "3")
    monkeypatch.setenv("PODIUM_QUEUE__TTL__LOW", "2m")
    config = load_control(EXAMPLE)
    assert config.resources.cpu == 3
    assert config.resources.memory_mib == 16 * 1024  # the file's other keys stay
    assert config.queue.ttl.low == 120


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ("[resources]\ncpu = -1\n", "resources.cpu"),
        ("[limits]\nmax_concurrent = 0\n", "limits.max_concurrent"),
        ("[agents.w]\nlimits = {rpm = -5}\n", "agents.w.limits.rpm"),
        ("[circuits]\ndefault = {failures = 0}\n", "circuits.default.failures"),
        ("[queue.ttl]\nhigh = \"soon\"\n", "queue.ttl.high"),
        ("[budgets]\nwarn_at = 2\n", "budgets.warn_at"),
        ("[budgets]\ndaily_usd = -1\n", "budgets.daily_usd"),
        ("[resourcez]\ncpu = 1\n", "resourcez"),
    ],
)
def test_a_bad_value_names_the_file_and_the_key(tmp_path: Path, toml: str, named: str) -> None:
    path = tmp_path / "podium.toml"
    path.write_text(toml)
    with pytest.raises(PodiumError) as caught:
        load_control(path)
    assert str(caught.value).startswith(f"{path}: {named}: ")


def test_the_cli_exits_2_on_bad_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "podium.toml"
    path.write_text("[limits]\nmax_concurrent = -3\n")
    monkeypatch.setenv("PODIUM_CONFIG", str(path))
    result = CliRunner().invoke(app, ["queue", "--store", f"sqlite:///{tmp_path}/p.db"])
    assert result.exit_code == 2
    assert "limits.max_concurrent" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "p.db").exists()  # nothing written


def test_malformed_toml_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "podium.toml"
    path.write_text("[limits\n")
    with pytest.raises(PodiumError, match="not valid TOML"):
        load_control(path)
