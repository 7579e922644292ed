"""The SDK as a reader meets it: README's example runs as written, the examples type-check.

README's block is run as a script in an empty directory, with no PODIUM_* settings.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _readme_sdk_block() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Python SDK\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert block is not None, "README's Python SDK section has no python block"
    return block.group(1)


def test_the_readme_sdk_example_runs_as_written(tmp_path: Path) -> None:
    script = tmp_path / "brief.py"
    script.write_text(_readme_sdk_block())
    env = {k: v for k, v in os.environ.items() if not k.startswith("PODIUM_")}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=90, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "succeeded {'title': 'Sagas', 'points': 2}"
    assert "name: brief" in lines


def test_the_python_examples_type_check_strictly() -> None:
    files = sorted(str(p) for p in (ROOT / "examples" / "python").glob("*.py"))
    env = {**os.environ, "MYPYPATH": str(ROOT / "examples")}
    proc = subprocess.run([sys.executable, "-m", "mypy", "--strict", *files],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=110)
    assert proc.returncode == 0, proc.stdout + proc.stderr
