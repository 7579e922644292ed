"""podium installs as a package: the wheel built from the source tree, installed into a fresh
virtual environment, runs `--version`, `validate` and the demo from a directory outside the
repository, so nothing it needs lives only in the source tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "examples" / "content_pipeline.yaml"
BUILD_TIMEOUT_S = 600  # the build and the install may fetch from the package index

pytestmark = pytest.mark.slow


def run(args: list[str], cwd: Path, timeout_s: float = BUILD_TIMEOUT_S) -> str:
    proc = subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=timeout_s,
        stdin=subprocess.DEVNULL, env=_clean_env(),
    )
    assert proc.returncode == 0, f"{args}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stdout + proc.stderr


def _clean_env() -> dict[str, str]:
    """No PODIUM_* settings, no PYTHONPATH into the source tree, no active virtualenv."""
    drop = ("PODIUM_", "PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


@pytest.mark.timeout(BUILD_TIMEOUT_S * 2)
def test_the_wheel_installs_into_a_fresh_venv_and_runs_from_outside_the_repo(
    tmp_path: Path,
) -> None:
    # The tree a clone has (what git tracks of it), without this checkout's build leftovers.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(
        REPO / "src", source / "src",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"),
    )
    wheels = tmp_path / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels),
         str(source)], tmp_path)
    [wheel] = wheels.glob("podium-*.whl")

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", str(wheel)],
        tmp_path)
    podium = env_dir / "bin" / "podium"

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    located = run([str(python), "-c", "import podium; print(podium.__file__)"], outside)
    assert located.strip().startswith(str(env_dir)), located  # not the source tree

    assert run([str(podium), "--version"], outside).strip().startswith("podium ")
    shutil.copy2(DEMO, outside / DEMO.name)
    assert "valid (" in run([str(podium), "validate", DEMO.name], outside)
    db = outside / "demo.db"
    out = run([str(podium), "run", DEMO.name, "--json", "--store", f"sqlite:///{db.name}"],
              outside, timeout_s=300)
    assert '"status": "succeeded"' in out or '"status": "degraded"' in out, out
    assert "applied migrations 1 to" in run(
        [str(podium), "db", "upgrade", "--store", "sqlite:///fresh.db"], outside
    )
