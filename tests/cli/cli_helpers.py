"""Step bodies for the CLI tests, imported by `podium` subprocesses through PYTHONPATH.

Their state lives in files the test controls, since each CLI call is a new process.
"""

from __future__ import annotations

from pathlib import Path


def count(counter: str) -> dict[str, int]:
    """Appends a line per call: the file's line count is how often the step really ran."""
    path = Path(counter)
    with path.open("a") as handle:
        handle.write("ran\n")
    return {"calls": len(path.read_text().splitlines())}


def needs_marker(marker: str) -> dict[str, bool]:
    """Fails until the marker file exists: the test creates it before a replay."""
    if not Path(marker).exists():
        raise RuntimeError(f"marker {marker} is missing")
    return {"ok": True}
