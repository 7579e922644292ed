"""Every metric the deployment files name is one `/metrics` really exposes.

The Grafana dashboard, the alert rules, the adapter and the autoscalers are read for
`podium_*` names, and each is looked up in the exposition of an engine that ran a few runs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from podium.engine.engine import Engine
from podium.model.workflow import Workflow
from podium.observe.metrics import Metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
NAME = re.compile(r"\bpodium_[a-z0-9_]+\b")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exposed(text: str) -> set[str]:
    """The series names of the exposition, families with no sample yet included."""
    names = set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def _strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for value in node.values() for s in _strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in _strings(value)]
    return [node] if isinstance(node, str) else []


def dashboard_queries() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "podium.json").read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def named_in_deploy() -> dict[str, set[str]]:
    """Every podium_* name per file: dashboard queries, rules, adapter, autoscalers."""
    found = {"grafana/podium.json": {n for q in dashboard_queries() for n in NAME.findall(q)}}
    for path in ("prometheus/alerts.yaml", "prometheus/adapter.yaml", "k8s/hpa.yaml",
                 "k8s/alternatives/keda-scaledobject.yaml"):
        docs = list(yaml.safe_load_all((DEPLOY / path).read_text()))
        found[path] = {n for s in _strings(docs) for n in NAME.findall(s)}
    return found


FLOWS = [
    Workflow.model_validate({"name": "names-llm", "steps": {"a": {
        "kind": "sim", "model": "gpt-test", "cost_usd": 0.1, "tokens": {"input": 5, "output": 2},
    }}}),
    Workflow.model_validate({"name": "names-retry", "steps": {"a": {
        "kind": "sim", "fail_times": 1, "retry": {"attempts": 2, "backoff": "1ms", "jitter": 0},
    }}}),
]


async def test_every_metric_the_deployment_names_is_exposed(engine: Engine) -> None:
    metrics = Metrics.attach(engine)
    for flow in FLOWS:
        await engine.run(flow)
    names = exposed((await metrics.exposition()).decode())
    assert "podium_runs_total" in names and "podium_desired_workers" in names
    for path, used in named_in_deploy().items():
        assert used, f"{path} names no podium metric"
        assert used <= names, f"{path} names metrics /metrics does not expose: {used - names}"


def test_the_dashboard_queries_every_kind_of_signal() -> None:
    queries = dashboard_queries()
    assert len(queries) >= 20
    used = {n for q in queries for n in NAME.findall(q)}
    for needed in ("podium_runs_total", "podium_queue_depth", "podium_desired_workers",
                   "podium_circuit_state", "podium_budget_remaining_usd", "podium_dlq_size",
                   "podium_llm_tokens_total", "podium_decision_latency_seconds_bucket"):
        assert needed in used
