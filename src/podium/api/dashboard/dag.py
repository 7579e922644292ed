"""A run's graph laid out for drawing: the plan's parallel groups as columns, edges between.

A wide group wraps into sub-columns, so a fan-out of 100 steps stays a readable block.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from podium.plan import Plan

NODE_W, NODE_H = 132, 34
GAP_X, GAP_Y, SUB_GAP = 56, 6, 10
PAD = 12
MAX_ROWS = 18  # a column taller than this wraps
LABEL_CHARS = 17


@dataclass(frozen=True, slots=True)
class Node:
    step_id: str
    label: str
    x: int
    y: int
    status: str
    critical: bool


@dataclass(frozen=True, slots=True)
class Edge:
    source: str
    target: str
    path: str
    critical: bool


@dataclass(frozen=True, slots=True)
class Column:
    index: int
    x: int
    width: int
    height: int
    size: int


@dataclass(frozen=True, slots=True)
class Dag:
    width: int
    height: int
    nodes: list[Node]
    edges: list[Edge]
    columns: list[Column]
    node_w: int = NODE_W
    node_h: int = NODE_H


def short(text: str, limit: int = LABEL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def layout(plan: Plan, needs: Mapping[str, Sequence[str]], statuses: Mapping[str, str]) -> Dag:
    critical = set(plan.critical_path)
    nodes: dict[str, Node] = {}
    columns: list[Column] = []
    x = PAD
    tallest = 0
    for index, group in enumerate(plan.groups):
        rows = min(len(group), MAX_ROWS)
        subs = max(1, math.ceil(len(group) / MAX_ROWS))
        width = subs * NODE_W + (subs - 1) * SUB_GAP
        for k, step_id in enumerate(group):
            sub, row = divmod(k, rows)
            nodes[step_id] = Node(
                step_id, short(step_id), x + sub * (NODE_W + SUB_GAP),
                PAD + 18 + row * (NODE_H + GAP_Y), statuses.get(step_id, "pending"),
                step_id in critical,
            )
        height = rows * (NODE_H + GAP_Y) - GAP_Y + 18
        columns.append(Column(index, x, width, height, len(group)))
        tallest = max(tallest, height)
        x += width + GAP_X
    path = list(plan.critical_path)
    critical_edges = set(itertools.pairwise(path))
    wrapped = {step_id for c, group in zip(columns, plan.groups, strict=True)
               if c.size > MAX_ROWS for step_id in group}
    column_of = {step_id: columns[i] for i, group in enumerate(plan.groups) for step_id in group}
    edges: dict[tuple[tuple[int, int], tuple[int, int]], Edge] = {}
    for step_id in plan.order:
        for need in needs.get(step_id, ()):
            if need not in nodes:
                continue
            # A wrapped group is one block: its edges meet at its side, not at every step.
            start = _side(column_of[need], right=True) if need in wrapped else _out(nodes[need])
            end = _side(column_of[step_id], right=False) if step_id in wrapped else _in(
                nodes[step_id])
            on_path = (need, step_id) in critical_edges
            known = edges.get((start, end))
            if known is None or (on_path and not known.critical):
                edges[(start, end)] = Edge(need, step_id, _curve(start, end), on_path)
    return Dag(x - GAP_X + PAD, tallest + 2 * PAD, list(nodes.values()), list(edges.values()),
               columns)


def _out(node: Node) -> tuple[int, int]:
    return node.x + NODE_W, node.y + NODE_H // 2


def _in(node: Node) -> tuple[int, int]:
    return node.x, node.y + NODE_H // 2


def _side(column: Column, *, right: bool) -> tuple[int, int]:
    return column.x + (column.width + 6 if right else -6), PAD + 18 + (column.height - 18) // 2


def _curve(a: tuple[int, int], b: tuple[int, int]) -> str:
    (x1, y1), (x2, y2) = a, b
    mid = (x1 + x2) // 2
    return f"M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}"
