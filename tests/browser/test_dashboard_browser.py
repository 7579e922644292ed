"""The dashboard in a real browser (Debian's Chromium, driven by Playwright): log in, start a
run from its form and watch it finish live, replay a failed run, approve a waiting step, a
viewer's limits, two screen widths, accessibility basics; screenshots for the docs.

Slow: skip with `-m "not slow"`. Every wait is on a condition, bounded by a timeout.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from liveserver import CHROMIUM_ARGS, LiveServer, chromium_or_skip, live_server

pytestmark = pytest.mark.slow

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
ROOT = Path(__file__).resolve().parents[2]
WAIT_MS = 20_000
expect.set_options(timeout=WAIT_MS)

GATED = {"name": "gated", "inputs": {"topic": {"type": "string", "required": True},
                                     "depth": {"type": "integer", "default": 2}},
         "steps": {"gate": {"kind": "wait", "signal": "go", "timeout": "10m"},
                   "write": {"kind": "sim", "needs": ["gate"], "latency": "50ms",
                             "output": {"topic": "{{ inputs.topic }}"}},
                   "check": {"kind": "sim", "needs": ["gate"], "latency": "50ms", "output": 1},
                   "ship": {"kind": "sim", "needs": ["write", "check"], "output": "ok"}}}
BROKEN = {"name": "broken", "steps": {
    "fetch": {"kind": "sim", "output": 1},
    "parse": {"kind": "sim", "needs": ["fetch"], "fail_rate": 1.0, "retry": {"attempts": 2}}}}
FANOUT = {"name": "bench-w3-fanout", "steps": {
    "start": {"kind": "sim", "output": 0},
    **{f"p{k}": {"kind": "sim", "needs": ["start"], "output": k} for k in range(100)},
    "join": {"kind": "sim", "needs": [f"p{k}" for k in range(100)], "output": "done"}}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    chromium_or_skip()
    with live_server(tmp_path_factory.mktemp("dashboard-live")) as live, live.api() as api:
        examples = [yaml.safe_load((ROOT / "examples" / name).read_text())
                    for name in ("content_pipeline.yaml", "content_pipeline_fails.yaml",
                                 "approval.yaml")]
        for definition in (GATED, BROKEN, FANOUT, *examples):
            response = api.post("/v1/workflows", json={"definition": definition})
            assert response.status_code in (200, 201), response.text
        yield live


@pytest.fixture(scope="module")
def browser(server: LiveServer) -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium_or_skip(), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: $PODIUM_SCREENSHOTS, else a temporary directory."""
    wanted = os.environ.get("PODIUM_SCREENSHOTS")
    if wanted:
        Path(wanted).mkdir(parents=True, exist_ok=True)
        return Path(wanted)
    return tmp_path_factory.mktemp("dashboard-shots")


class Tab:
    """A page with its console errors collected (every test ends asserting there were none)."""

    def __init__(self, browser: Any, server: LiveServer, width: int = 1280) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": 900},
                                           base_url=server.url)
        self.page = self.context.new_page()
        self.page.set_default_timeout(WAIT_MS)
        self.errors: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.server = server

    def log_in(self, role: str) -> None:
        self.page.goto("/ui/runs")
        assert "/ui/login" in self.page.url
        self.page.get_by_label("API key").fill(self.server.keys[role])
        self.page.get_by_role("button", name="Log in").click()
        self.page.wait_for_url(re.compile(r".*/ui/runs$"))

    def close(self) -> None:
        self.context.close()
        assert not self.errors, f"console errors: {self.errors}"


@pytest.fixture
def tab(browser: Any, server: LiveServer) -> Iterator[Tab]:
    opened = Tab(browser, server)
    yield opened
    opened.close()


def start(server: LiveServer, workflow: str, inputs: dict[str, Any] | None = None) -> str:
    with server.api() as api:
        response = api.post("/v1/runs", json={"workflow_name": workflow, "inputs": inputs or {}})
        assert response.status_code == 201, response.text
        run_id: str = response.json()["run_id"]
        return run_id


def node_status(tab: Tab, step: str) -> str:
    status: str = tab.page.locator(f'.dag .node[data-step="{step}"] .stt').text_content() or ""
    return status


def test_log_in_start_a_run_from_its_form_and_watch_it_finish_live(
    tab: Tab, server: LiveServer, shots: Path,
) -> None:
    tab.log_in("operator")
    page = tab.page
    page.get_by_role("link", name="Start a run").click()
    page.get_by_role("link", name="gated").click()
    page.get_by_label(re.compile("^topic")).fill("llamas")
    page.get_by_label(re.compile("^depth")).fill("3")
    page.get_by_role("button", name="Start run").click()
    page.wait_for_url(re.compile(r".*/ui/runs/[0-9a-f-]+$"))
    run_id = page.url.rsplit("/", 1)[1]
    expect(page.locator('.dag .node[data-step="gate"] .stt')).to_have_text("waiting")
    assert node_status(tab, "ship") == "pending"
    page.evaluate("window.notReloaded = true")

    with server.api("operator") as api:
        assert api.post(f"/v1/runs/{run_id}/signals/go", json={"ok": True}).status_code == 202
    for step in ("gate", "write", "check", "ship"):
        expect(page.locator(f'.dag .node[data-step="{step}"] .stt')).to_have_text("succeeded")
    expect(page.locator("#run-status")).to_have_text("succeeded")
    assert page.evaluate("window.notReloaded") is True
    page.wait_for_selector("#event-rows tr >> text=run.completed")
    page.screenshot(path=str(shots / "run.png"), full_page=True)


def test_a_failed_run_is_replayed_from_the_dead_letter_queue(
    tab: Tab, server: LiveServer,
) -> None:
    run_id = start(server, "broken")
    with server.api() as api:
        _until(lambda: api.get(f"/v1/dlq/{run_id}").status_code == 200)
    tab.log_in("operator")
    page = tab.page
    page.goto(f"/ui/runs/{run_id}")
    assert page.locator("#run-status").inner_text() == "failed"
    assert "simulated failure" in page.locator("table.steps").inner_text()
    assert page.locator(".timeline rect.k-failed").count() >= 2  # both attempts, and backoff
    assert page.locator(".timeline rect.k-backoff").count() >= 1
    page.get_by_role("button", name="Replay from the dead-letter queue").click()
    page.wait_for_selector(".flash >> text=replay started")
    page.wait_for_selector("#event-rows tr >> text=run.replayed")


def test_an_operator_approves_a_waiting_step_with_a_signal(
    tab: Tab, server: LiveServer,
) -> None:
    run_id = start(server, "approval", {"title": "launch"})
    tab.log_in("operator")
    page = tab.page
    page.goto(f"/ui/runs/{run_id}")
    expect(page.locator('.dag .node[data-step="approval"] .stt')).to_have_text("waiting")
    if page.get_by_label("Signal").input_value() != "approval":  # the page came before the wait
        page.reload()
    assert page.get_by_label("Signal").input_value() == "approval"
    page.get_by_label("Payload (JSON)").fill('{"approved": true, "by": "browser"}')
    page.get_by_role("button", name="Send signal").click()
    page.wait_for_selector(".flash >> text=signal approval sent")
    expect(page.locator("#run-status")).to_have_text("succeeded")
    with server.api() as api:
        summary = api.get(f"/v1/runs/{run_id}").json()
    assert summary["steps"]["approval"]["output"] == {"approved": True, "by": "browser"}
    assert summary["steps"]["publish"]["status"] == "succeeded"


def test_a_viewer_sees_no_cancel_button_and_a_forged_cancel_is_403(
    tab: Tab, server: LiveServer,
) -> None:
    run_id = start(server, "gated", {"topic": "x"})
    tab.log_in("viewer")
    page = tab.page
    page.goto(f"/ui/runs/{run_id}")
    assert page.locator("#cancel").count() == 0
    assert page.get_by_role("link", name="Start a run").count() == 0
    csrf = page.locator("input[name=csrf]").first.input_value()
    forged = page.request.post(f"/ui/runs/{run_id}/cancel", form={"csrf": csrf},
                               headers={"Origin": server.url})
    assert forged.status == 403
    with server.api() as api:
        assert api.get(f"/v1/runs/{run_id}").json()["status"] in ("queued", "running")
        api.post(f"/v1/runs/{run_id}/cancel")


@pytest.mark.parametrize("width", [1280, 390])
def test_pages_fit_the_screen_and_are_usable_by_keyboard(
    browser: Any, server: LiveServer, shots: Path, width: int,
) -> None:
    done = start(server, "content-pipeline")
    failed = start(server, "content-pipeline-fails")
    fanout = start(server, "bench-w3-fanout")
    with server.api() as api:
        for run_id in (done, failed, fanout):
            _until(lambda r=run_id: api.get(f"/v1/runs/{r}").json()["status"]
                   not in ("queued", "running"))
        # Something on each panel of the system page (for its screenshot).
        api.post("/v1/circuits/http:api.example.com/open")
        api.put("/v1/pauses/agent/translator")
        api.post("/v1/schedules", json={"workflow": "content-pipeline", "every": "1h",
                                        "name": "hourly-digest"})
    tab = Tab(browser, server, width)
    try:
        tab.log_in("admin")
        page = tab.page
        for name, url in (("runs", "/ui/runs"), ("run-dag", f"/ui/runs/{done}"),
                          ("run-failed", f"/ui/runs/{failed}"),
                          ("run-w3", f"/ui/runs/{fanout}"), ("system", "/ui/system"),
                          ("start", "/ui/start/gated")):
            page.goto(url)
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 1, f"{url} is {overflow}px wider than a {width}px screen"
            assert _unlabelled(page) == [], url
            page.screenshot(path=str(shots / f"{name}-{width}.png"), full_page=name != "run-w3")
        page.goto("/ui/runs")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.className") == "skip"
        page.keyboard.press("Tab")
        focused = page.evaluate("[document.activeElement.tagName,"
                                " getComputedStyle(document.activeElement).outlineStyle]")
        assert focused[0] == "A" and focused[1] != "none"
        if width == 1280:
            page.goto(f"/ui/runs/{fanout}")
            assert page.locator(".dag .node").count() == 102
            box = page.locator("svg.dag").bounding_box()
            assert box is not None and box["height"] < 800  # 100 in parallel wrap into columns
    finally:
        tab.close()


def _unlabelled(page: Any) -> list[str]:
    """Form controls a screen reader could not name."""
    found: list[str] = page.evaluate("""() => [...document.querySelectorAll(
        'input:not([type=hidden]), select, textarea')].filter((el) =>
        !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
    ).map((el) => el.outerHTML.slice(0, 80))""")
    return found


def _until(check: Any, attempts: int = 400) -> None:
    """Polls `check` (an HTTP round trip each time) until it holds, a bounded number of times."""
    for _ in range(attempts):
        if check():
            return
        threading_wait()
    raise AssertionError("the condition never held")


def threading_wait() -> None:
    import threading
    threading.Event().wait(0.05)
