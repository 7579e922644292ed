"""Planning: the dependency graph, its parallel groups, critical path and peak resources.

`build_plan(workflow)` is the entry point; `plan_graph` works on plain mappings.
"""

from __future__ import annotations

from podium.plan.graph import PeakResources, Plan, build_plan, find_cycles, plan_graph

__all__ = ["PeakResources", "Plan", "build_plan", "find_cycles", "plan_graph"]
