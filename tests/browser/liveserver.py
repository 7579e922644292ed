"""A real `podium serve`-like server for browser tests: uvicorn and an engine on their own loop
in a thread, on a free port, over a SQLite store; keys for each role; Chromium from Debian.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from podium.api.app import create_app
from podium.api.keys import new_key
from podium.bus import open_bus
from podium.engine.engine import Engine
from podium.events import SYSTEM_ACTOR, audit_event
from podium.settings import Settings
from podium.store import Store, open_store

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
ROLES = ("viewer", "operator", "admin")
START_TIMEOUT_S = 30.0


def chromium_or_skip() -> str:
    """Debian's chromium; under CI a missing one fails (.ci/run installs it), else skips."""
    found = shutil.which("chromium") or (CHROMIUM if os.path.exists(CHROMIUM) else None)
    if found is None:
        message = "chromium is not installed (apt-get install -y chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


@dataclass
class LiveServer:
    url: str = ""
    keys: dict[str, str] = field(default_factory=dict)
    loop: asyncio.AbstractEventLoop | None = None
    engine: Engine | None = None
    app: Any = None
    server: uvicorn.Server | None = None

    def call(self, coro: Coroutine[Any, Any, Any], timeout_s: float = 30.0) -> Any:
        """Runs `coro` on the server's loop and returns its result."""
        assert self.loop is not None
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout_s)

    def api(self, role: str = "admin") -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30.0,
                            headers={"Authorization": f"Bearer {self.keys[role]}"})


async def _add_keys(store: Store) -> dict[str, str]:
    keys = {}
    for role in ROLES:
        token, record = new_key(f"browser-{role}", role, None, None, 0.0, "test")
        await store.add_key(record, audit_event(SYSTEM_ACTOR, "key.create", record.key_id))
        keys[role] = token
    return keys


async def _serve(live: LiveServer, store_url: str, ready: threading.Event) -> None:
    settings = Settings(poll_interval_s=0.05, lease_s=5)
    async with (open_store(store_url) as store, open_bus("memory://") as bus,
                Engine(store, bus, settings) as engine):
        live.keys = await _add_keys(store)
        live.engine, live.loop = engine, asyncio.get_running_loop()
        live.app = create_app(engine)
        config = uvicorn.Config(live.app, host="127.0.0.1", port=0, lifespan="off",
                                log_level="warning")
        live.server = uvicorn.Server(config)
        serving = asyncio.create_task(live.server.serve())
        async with asyncio.timeout(START_TIMEOUT_S):
            while not live.server.started:
                await asyncio.sleep(0.01)
        port = live.server.servers[0].sockets[0].getsockname()[1]
        live.url = f"http://127.0.0.1:{port}"
        ready.set()
        await serving
        live.app.state.streams.close()


@contextmanager
def live_server(tmp: Path) -> Iterator[LiveServer]:
    live = LiveServer()
    ready = threading.Event()
    failure: list[BaseException] = []

    def main() -> None:
        try:
            asyncio.run(_serve(live, f"sqlite:///{tmp / 'browser.db'}", ready))
        except BaseException as exc:  # reported to the test thread
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=main, name="dashboard-live-server", daemon=True)
    thread.start()
    if not ready.wait(START_TIMEOUT_S) or failure:
        raise RuntimeError(f"the live server did not start: {failure}")
    try:
        yield live
    finally:
        assert live.loop is not None and live.server is not None
        live.loop.call_soon_threadsafe(setattr, live.server, "should_exit", True)
        live.loop.call_soon_threadsafe(live.app.state.streams.close)
        thread.join(START_TIMEOUT_S)
