"""Runs the real `podium` command as a subprocess against a SQLite store in a temp directory.

Every call checks that no output holds a traceback: errors must be one clear line.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from podium.store import open_store

HERE = Path(__file__).parent
CLI = [sys.executable, "-m", "podium.cli.app"]
CALL_TIMEOUT_S = 60


def cli_env() -> dict[str, str]:
    """The environment of a CLI call: the step helpers importable, no store from outside."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PODIUM_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    return env


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def check_output(stdout: str, stderr: str) -> None:
    assert "Traceback" not in stdout, stdout
    assert "Traceback" not in stderr, stderr


@dataclass(frozen=True)
class Podium:
    """`podium ...` bound to one store; `store_path` is the SQLite file."""

    store_path: Path
    workdir: Path

    @property
    def store(self) -> str:
        return f"sqlite:///{self.store_path}"

    def args(self, *args: str, store: bool = True) -> list[str]:
        return [*CLI, *args, *(["--store", self.store] if store else [])]

    def __call__(self, *args: str, store: bool = True, stdin: str | None = None) -> Result:
        proc = subprocess.run(
            self.args(*args, store=store), capture_output=True, text=True, env=cli_env(),
            cwd=self.workdir, timeout=CALL_TIMEOUT_S, input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
        )
        check_output(proc.stdout, proc.stderr)
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def start(self, *args: str) -> subprocess.Popen[str]:
        """A command left running (a run that waits), to act on from a second process.
        Ctrl-C reaches it as it would at a terminal, even when the suite runs as a background
        job: those ignore SIGINT, and a child inherits that (it would never see the Ctrl-C)."""
        return subprocess.Popen(
            self.args(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=cli_env(), cwd=self.workdir, stdin=subprocess.DEVNULL,
            preexec_fn=_default_sigint,
        )

    def write(self, name: str, text: str) -> Path:
        path = self.workdir / name
        path.write_text(text)
        return path

    def wait_for_running(self, step: str | None = None, timeout_s: float = 60.0) -> str:
        """Polls the store until a run is running (and its `step` too, if given); returns its
        id. Read in-process: a CLI call per poll would take seconds on a busy machine."""

        async def running() -> str | None:
            async with open_store(self.store) as store:
                for run in await store.list_runs(statuses=["running"], limit=1):
                    steps = {s.step_id: s.status for s in await store.get_steps(run.run_id)}
                    if step is None or steps.get(step) == "running":
                        return run.run_id
            return None

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            run_id = asyncio.run(running()) if self.store_path.exists() else None
            if run_id is not None:
                return run_id
            time.sleep(0.1)
        raise AssertionError(f"no run started running{f' its step {step}' if step else ''}")


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def finish(proc: subprocess.Popen[str], timeout_s: float = 30.0) -> Result:
    try:
        stdout, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()  # its pipes closed now, not in a later test's ResourceWarning
        raise
    check_output(stdout, stderr)
    return Result(proc.returncode, stdout, stderr)
