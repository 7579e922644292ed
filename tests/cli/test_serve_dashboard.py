"""`podium serve` on loopback prints the dashboard's one-time login link: it opens an admin
session once, with no key created first, and never again."""

from __future__ import annotations

import re
import socket
import subprocess
import threading
from pathlib import Path

import httpx
from cli_support import CLI, cli_env

LINK = re.compile(r"dashboard: (http://127\.0\.0\.1:\d+/ui/login\?token=[\w-]+)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _link(proc: subprocess.Popen[str]) -> str:
    """The login link from serve's notes (each line is read as it comes; EOF if it exits)."""
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        found = LINK.search(line)
        if found:
            return found.group(1)
    raise AssertionError(f"podium serve printed no login link: {''.join(seen)}")


def _until_listening(url: str, attempts: int = 600) -> None:
    """The link is printed just before the socket opens: poll, a bounded number of times."""
    for _ in range(attempts):
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            threading.Event().wait(0.05)
    raise AssertionError(f"nothing answered at {url}")


def test_the_login_link_opens_one_session_once(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [*CLI, "serve", "--host", "127.0.0.1", "--port", str(port),
         "--store", f"sqlite:///{tmp_path / 'podium.db'}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=cli_env(),
        cwd=tmp_path,
    )
    try:
        link = _link(proc)
        _until_listening(f"http://127.0.0.1:{port}/healthz")
        with httpx.Client(timeout=30) as browser:
            entered = browser.get(link)
            assert entered.status_code == 303 and entered.headers["location"] == "/ui/runs"
            assert browser.get(f"http://127.0.0.1:{port}/ui/system").status_code == 200
        with httpx.Client(timeout=30) as other:
            again = other.get(link)
            assert again.status_code == 200 and "used or expired" in again.text
            assert other.get(f"http://127.0.0.1:{port}/ui/runs").status_code == 303
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
