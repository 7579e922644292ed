"""The secrets a podium process may hand to expressions and step kinds: allowed names from the
environment, then the optional secrets file (whose names are allowed by being in it)."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from podium.control.config import Secrets
from podium.errors import PodiumError


def load_secrets(config: Secrets, environ: Mapping[str, str]) -> dict[str, str]:
    """NAME -> value: each name in `allow` that the environment sets, then every entry of
    `config.file` (a file entry wins over the environment). A bad file raises PodiumError."""
    found = {name: environ[name] for name in config.allow if name in environ}
    if config.file is not None:
        found.update(_read_file(config.file))
    return found


def _read_file(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise PodiumError(f"{path}: cannot read the secrets file: {reason}") from None
    try:
        data = _parse(path, text)
    except (ValueError, yaml.YAMLError) as exc:  # TOMLDecodeError and JSONDecodeError included
        message = " ".join(str(exc).split())
        raise PodiumError(f"{path}: not a valid secrets file: {message}") from None
    return _checked(path, data)


def _parse(path: Path, text: str) -> Any:
    suffix = path.suffix.lower()
    if suffix == ".toml":
        return tomllib.loads(text)
    if suffix == ".json":
        return json.loads(text)
    return yaml.safe_load(text)


def _checked(path: Path, data: Any) -> dict[str, str]:
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise PodiumError(f"{path}: a secrets file must map NAME to a string value, not a {kind}")
    for name, value in data.items():
        if not isinstance(name, str) or not isinstance(value, str):
            kind = type(value).__name__
            raise PodiumError(
                f"{path}: secret {name!r} must be a string (got a {kind}; quote the value)"
            )
    return data
