"""The spend ledger's records: a paid call's cost (`SpendRow`), a budget hold, a scope's usage.

Calls are ledgered as they end (a step's result carries the rest); budget guards place holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

# Float sums drift (0.1 + 0.2 > 0.3): a call that fits to the last nano-dollar fits.
EPSILON_USD = 1e-9
SPEND_GROUPS = ("workflow", "model", "run", "day", "hour")
HOUR_S, DAY_S = 3600.0, 86400.0  # the budget windows


@dataclass(frozen=True, slots=True)
class SpendRow:
    """What one paid call cost (`call_id` names it), or one committed step result (a step,
    or one for_each instance; `call_id` ''). `estimated`: no usage came back (the call timed
    out, was cut or abandoned), so the cost is the call's estimate."""

    run_id: str
    step_id: str
    index: int
    ts: float  # when the result was committed: the rolling windows count from it
    workflow: str
    model: str | None
    tokens_in: int
    tokens_out: int
    usd: float
    attempt: int = 0
    call_id: str = ""
    estimated: bool = False


@dataclass(frozen=True, slots=True)
class BudgetHold:
    """Money set aside for one call in flight, counted by every engine until the call's cost
    is in the ledger; a crashed engine's holds run out at `expires_at`."""

    hold_id: str
    run_id: str
    workflow: str
    usd: float
    holder: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class WindowScope:
    """A limit on what the ledger holds over the last `window_s` seconds (rolling), for one
    workflow or (`workflow` None) for all of them."""

    scope: str  # "global/hourly", "workflow/NAME/daily": names it in errors and events
    limit_usd: float
    window_s: float
    workflow: str | None = None

    @property
    def lock_name(self) -> str:
        """Scopes over the same rows (hourly and daily) share one lock."""
        return "global" if self.workflow is None else f"workflow/{self.workflow}"


@dataclass(frozen=True, slots=True)
class ScopeUsage:
    """A scope as found: committed spend in its window and unexpired holds."""

    scope: WindowScope
    spent_usd: float
    held_usd: float

    def fits(self, usd: float) -> bool:
        return self.spent_usd + self.held_usd + usd <= self.scope.limit_usd + EPSILON_USD


@dataclass(frozen=True, slots=True)
class SpendGroup:
    """`podium spend`: one group's total (its key is a workflow, model, run, day or hour)."""

    key: str
    usd: float
    tokens_in: int
    tokens_out: int
    calls: int
    estimated_usd: float = 0.0  # the part of `usd` that is estimated (calls without usage)


def spend_params(row: SpendRow) -> tuple[object, ...]:
    """The row in column order (run_id first: the stores fence rows by it)."""
    return (
        row.run_id,
        row.step_id,
        row.index,
        row.ts,
        row.workflow,
        row.model,
        row.tokens_in,
        row.tokens_out,
        row.usd,
        row.attempt,
        row.call_id,
        row.estimated,
    )


def hold_params(hold: BudgetHold) -> tuple[object, ...]:
    return (hold.hold_id, hold.run_id, hold.workflow, hold.usd, hold.holder, hold.expires_at)


def usage_columns(scope: WindowScope, now: float, mark: str) -> tuple[str, list[object]]:
    """Two columns: the scope's committed spend in its window and its unexpired holds.

    `mark` is the dialect's placeholder (`?` or `%s`).
    """
    only = f" AND workflow = {mark}" if scope.workflow is not None else ""
    mine: list[object] = [scope.workflow] if scope.workflow is not None else []
    sql = (
        f"(SELECT coalesce(sum(usd), 0) FROM spend WHERE ts > {mark}{only}),"
        f" (SELECT coalesce(sum(usd), 0) FROM budget_holds WHERE expires_at > {mark}{only})"
    )
    return sql, [now - scope.window_s, *mine, now, *mine]


def report_select(
    key: str, since: float, workflow: str | None, mark: str, true: str
) -> tuple[str, list[object]]:
    """`podium spend`: totals per group key (an SQL expression over the spend table), and
    the estimated part of each (`true` is the dialect's boolean literal)."""
    only = f" AND workflow = {mark}" if workflow is not None else ""
    sql = (
        f"SELECT {key} AS k, sum(usd), sum(tokens_in), sum(tokens_out), count(*),"
        f" coalesce(sum(CASE WHEN estimated = {true} THEN usd END), 0) FROM spend"
        f" WHERE ts > {mark}{only} GROUP BY k"
    )
    return sql, [since, *([workflow] if workflow is not None else [])]


def group_key(by: str, value: object) -> str:
    """A group's key as shown: day and hour buckets (numbers since the epoch) as UTC ISO."""
    if by == "day":
        return datetime.fromtimestamp(int(str(value)) * 86400, UTC).strftime("%Y-%m-%d")
    if by == "hour":
        return datetime.fromtimestamp(int(str(value)) * 3600, UTC).strftime("%Y-%m-%dT%H:00Z")
    return "" if value is None else str(value)


def scope_title(scope: WindowScope) -> str:
    period = "hourly" if scope.window_s == HOUR_S else "daily"
    owner = "global" if scope.workflow is None else f"workflow {scope.workflow}"
    return f"{owner} {period} budget (rolling {'1h' if period == 'hourly' else '24h'})"
