"""Durations ("250ms", "5m", 3) and sizes ("256Mi", "1Gi") parsed once into numbers.

Everything past the model works in seconds (`*_s`) and mebibytes (`*_mib`).
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BeforeValidator

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|K|M|G|T)?\s*$")
_SIZE_MIB = {
    None: 1 / (1024 * 1024),  # a bare number is bytes, as in Kubernetes
    "Ki": 1 / 1024,
    "Mi": 1.0,
    "Gi": 1024.0,
    "Ti": 1024.0 * 1024,
    "K": 1000 / 1024**2,
    "M": 1000**2 / 1024**2,
    "G": 1000**3 / 1024**2,
    "T": 1000**4 / 1024**2,
}


def parse_duration(value: Any) -> float:
    """Seconds from `250ms`, `2s`, `5m`, `1h`, `1d` or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration (got {value!r})")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if match is None:
            raise ValueError(f"not a duration; use e.g. 250ms, 2s, 5m, 1h (got {value!r})")
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if not math.isfinite(seconds):
        raise ValueError(f"a duration must be a finite number (got {value!r})")
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative (got {value!r})")
    return seconds


def parse_size_mib(value: Any) -> float:
    """Mebibytes from `256Mi`, `1Gi`, `500M` or a number of bytes."""
    if isinstance(value, bool):
        raise ValueError(f"not a size (got {value!r})")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"a size cannot be negative (got {value!r})")
        mib = float(value) / (1024 * 1024)
    else:
        match = _SIZE.match(str(value))
        if match is None:
            raise ValueError(f"not a size; use e.g. 256Mi, 1Gi (got {value!r})")
        mib = float(match.group(1)) * _SIZE_MIB[match.group(2)]
    if not math.isfinite(mib):
        raise ValueError(f"a size must be a finite number (got {value!r})")
    return mib


Duration = Annotated[float, BeforeValidator(parse_duration)]
SizeMiB = Annotated[float, BeforeValidator(parse_size_mib)]


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:.2f}s"
    return f"{seconds / 60:.1f}m"
