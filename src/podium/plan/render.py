"""The execution plan as a rich table: each parallel group with its steps, the critical path marked.

Shown by `podium plan` without `--json`; pure, the caller owns the console.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from podium.model.workflow import Step, Workflow
from podium.plan.graph import Plan

CRITICAL_MARK = "★"


def render_plan(plan: Plan, workflow: Workflow) -> RenderableType:
    """A table of groups (levels) and their steps, then a line with the estimate and the peak."""
    critical = set(plan.critical_path)
    table = Table(title=f"plan: {workflow.name}", title_justify="left")
    table.add_column("level", justify="right")
    table.add_column("step")
    table.add_column("kind")
    table.add_column("planned", justify="right")
    table.add_column("needs")
    for level, group in enumerate(plan.groups):
        for position, step_id in enumerate(group):
            table.add_row(
                str(level) if position == 0 else "",
                *_step_cells(workflow.steps[step_id], step_id in critical),
                end_section=position == len(group) - 1,
            )
    return Group(table, _footer(plan))


def _step_cells(step: Step, critical: bool) -> tuple[Text, str, str, str]:
    name = Text(f"{CRITICAL_MARK} {step.id}", style="bold") if critical else Text(f"  {step.id}")
    kind = step.kind
    if step.for_each is not None:
        kind += f" ×each (max {step.max_parallel})" if step.max_parallel else " ×each"
    return name, kind, format_seconds(step.planned_s), ", ".join(step.needs) or "—"


def _footer(plan: Plan) -> Text:
    peak = plan.resources
    return Text(
        f"{CRITICAL_MARK} critical path · estimated {format_seconds(plan.estimated_duration_s)}"
        f" · peak cpu {peak.cpu:g}, memory {peak.memory_mib:g} MiB, api calls {peak.api_calls}"
    )


def format_seconds(seconds: float) -> str:
    """`20ms`, `2.5s`, `1.5m`, `2h`: the largest unit that fits, to two decimals."""
    for unit, size in (("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= size:
            return f"{round(seconds / size, 2):g}{unit}"
    return f"{round(seconds * 1000, 2):g}ms"
