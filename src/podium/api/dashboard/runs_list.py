"""The runs page: filters (status, workflow, time range, run-id text), counts by status, and
keyset pages that stay fast over a large store; `/ui/runs/rows` re-renders the table live.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse

from podium.api import workflows
from podium.api.auth import Permission, Principal, permit
from podium.api.dashboard.gate import PREFIX
from podium.api.dashboard.render import page
from podium.api.deps import EngineDep
from podium.engine.engine import Engine
from podium.store.records import RUN_STATUSES, RunPage, RunState

router = APIRouter(prefix=f"{PREFIX}/runs", include_in_schema=False)
Reader = Annotated[Principal, permit(Permission.RUNS_READ)]
PAGE = 50
SCOPED_SCAN = 1000  # a scoped key's runs are filtered here, from this many newest
MAX_TEXT = 200  # a filter longer than any name or id is cut, not sent to the store whole
WINDOWS = {"": None, "1h": 3600.0, "24h": 86400.0, "7d": 7 * 86400.0, "30d": 30 * 86400.0}


@dataclass(frozen=True)
class Filters:
    statuses: tuple[str, ...] = ()
    workflow: str = ""
    window: str = ""
    q: str = ""
    before: tuple[float, str] | None = None
    start: str = ""  # a UTC date, YYYY-MM-DD: runs created on or after it
    end: str = ""  # a UTC date: runs created on or before it

    def query(self, **changes: object) -> str:
        values = {"status": list(self.statuses), "workflow": self.workflow,
                  "window": self.window, "q": self.q, "start": self.start, "end": self.end}
        values.update(changes)  # type: ignore[arg-type]
        return urlencode({k: v for k, v in values.items() if v}, doseq=True)

    def since(self, now: float) -> float | None:
        window = WINDOWS[self.window]
        bounds = [b for b in (None if window is None else now - window, _day(self.start))
                  if b is not None]
        return max(bounds) if bounds else None

    def until(self) -> float | None:
        end = _day(self.end)
        return None if end is None else end + 86400.0


def _day(text: str) -> float | None:
    return None if not text else datetime.strptime(text, "%Y-%m-%d").replace(
        tzinfo=UTC).timestamp()


def _invalid(field: str, message: str) -> RequestValidationError:
    return RequestValidationError([{"loc": ("query", field), "type": "value_error",
                                    "msg": message}])


def filters_of(
    status: Annotated[list[str] | None, Query()] = None, workflow: str = "", window: str = "",
    q: str = "", before: str = "", start: str = "", end: str = "",
) -> Filters:
    """The page's filters from its query string (a dependency of both routes)."""
    statuses = tuple(s for value in status or [] for s in value.split(",") if s)
    unknown = [s for s in statuses if s not in RUN_STATUSES]
    if unknown:
        raise _invalid("status", f"{unknown[0]!r} is not a run status")
    if window not in WINDOWS:
        raise _invalid("window", f"window is one of {', '.join(w for w in WINDOWS if w)}")
    for name, text in (("start", start), ("end", end)):
        try:
            _day(text)
        except ValueError:
            raise _invalid(name, f"{name} is a date, YYYY-MM-DD (got {text[:40]!r})") from None
    cursor = None
    if before:
        ts, _, run_id = before.partition("~")
        try:
            cursor = (float(ts), run_id[:MAX_TEXT])
        except ValueError:
            raise _invalid("before", "a page cursor reads <created_at>~<run id>") from None
    return Filters(statuses, workflow.strip()[:MAX_TEXT], window, q.strip()[:MAX_TEXT], cursor,
                   start, end)


@dataclass(frozen=True)
class Listing:
    runs: list[RunState]
    counts: dict[str, int] | None
    next_cursor: str | None


async def listing(engine: Engine, principal: Principal, f: Filters, limit: int = PAGE) -> Listing:
    run_page = RunPage(since=f.since(engine.clock.now()), until=f.until(),
                       run_id_contains=f.q or None, before=f.before)
    store = engine.store
    workflow = f.workflow or None
    statuses = list(f.statuses) or None
    if workflow is not None and not principal.sees(workflow):
        return Listing([], {}, None)
    if principal.scope is None or workflow is not None:
        rows = await store.list_runs(statuses=statuses, workflow=workflow, limit=limit + 1,
                                     page=run_page)
        # A text search would count by scanning every id: its counts are left out.
        counts: dict[str, int] | None = None if f.q else await store.count_runs(
            workflow=workflow, page=RunPage(since=run_page.since, until=run_page.until))
    else:  # the store filters by exact name only
        rows = await store.list_runs(statuses=statuses, limit=SCOPED_SCAN, page=run_page)
        rows = [r for r in rows if principal.sees(r.workflow)][: limit + 1]
        counts = None  # counting another team's runs would tell about them
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = f"{rows[-1].created_at!r}~{rows[-1].run_id}" if more and rows else None
    return Listing(rows, counts, cursor)


FiltersDep = Annotated[Filters, Depends(filters_of)]


@router.get("", response_class=HTMLResponse)
async def runs_page(
    request: Request, engine: EngineDep, principal: Reader, f: FiltersDep
) -> HTMLResponse:
    found = await listing(engine, principal, f)
    registered = await workflows.list_workflows(engine, principal, name=None, limit=200)
    names = sorted({w["name"] for w in registered["workflows"]})
    return page(request, "runs.html", f=f, listing=found, live=f.before is None, names=names)


@router.get("/rows", response_class=HTMLResponse)
async def runs_rows(
    request: Request, engine: EngineDep, principal: Reader, f: FiltersDep
) -> HTMLResponse:
    """The table and counts alone, for the page's live refresh."""
    found = await listing(engine, principal, f)
    return page(request, "_runs_table.html", f=f, listing=found)
