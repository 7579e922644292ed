"""Fixtures of the CLI tests: a `podium` bound to a fresh store, or to one a module shares."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_support import Podium


@pytest.fixture
def podium(tmp_path: Path) -> Podium:
    return Podium(tmp_path / "p.db", tmp_path)


@pytest.fixture(scope="module")
def shared_podium(tmp_path_factory: pytest.TempPathFactory) -> Podium:
    """One store for the tests that only read what earlier runs left."""
    path = tmp_path_factory.mktemp("shared")
    return Podium(path / "p.db", path)
