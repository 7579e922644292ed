"""Secrets come from allowed environment names and the secrets file, nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from podium.control.config import Secrets
from podium.control.secrets import load_secrets
from podium.errors import PodiumError

ENVIRON = {"OPENAI_API_KEY": "sk-env", "HOME": "/root", "DATABASE_PASSWORD": "hunter2"}


def test_only_allowed_names_come_from_the_environment() -> None:
    assert load_secrets(Secrets(), ENVIRON) == {"OPENAI_API_KEY": "sk-env"}
    assert load_secrets(Secrets(allow=[]), ENVIRON) == {}


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("s.toml", 'API_TOKEN = "tok-1"\nOPENAI_API_KEY = "sk-file"\n'),
        ("s.json", '{"API_TOKEN": "tok-1", "OPENAI_API_KEY": "sk-file"}'),
        ("s.yaml", "API_TOKEN: tok-1\nOPENAI_API_KEY: sk-file\n"),
    ],
)
def test_the_file_adds_its_names_and_wins_over_the_environment(
    tmp_path: Path, name: str, text: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    found = load_secrets(Secrets(file=path), ENVIRON)
    assert found == {"OPENAI_API_KEY": "sk-file", "API_TOKEN": "tok-1"}


@pytest.mark.parametrize(
    ("name", "text", "reason"),
    [
        ("bad.toml", "A = ", "not a valid secrets file"),
        ("bad.json", "[1, 2]", "must map NAME to a string value, not a list"),
        ("num.yaml", "PORT: 5432\n", "secret 'PORT' must be a string"),
        ("bad.yaml", "a: [", "not a valid secrets file"),
    ],
)
def test_a_bad_secrets_file_is_one_line_naming_the_file(
    tmp_path: Path, name: str, text: str, reason: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(PodiumError) as info:
        load_secrets(Secrets(file=path), ENVIRON)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and reason in message and "\n" not in message


def test_a_missing_secrets_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PodiumError, match="cannot read the secrets file"):
        load_secrets(Secrets(file=tmp_path / "nope.toml"), ENVIRON)
