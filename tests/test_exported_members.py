"""The SDK surface is pinned: changing `podium.__all__` is a deliberate, reviewed act."""

from __future__ import annotations

from pathlib import Path

import podium


def test_the_public_api_is_exactly_what_is_documented() -> None:
    assert set(podium.__all__) == {
        "Engine", "Event", "NonRetryable", "Plan", "PodiumError", "Retry", "RunFinished",
        "RunNotFound", "RunSummary", "Settings", "Step", "StepContext", "StepError",
        "StepResult", "StepTimedOut", "Workflow", "WorkflowInvalid", "__version__",
        "build_plan", "from_yaml", "load_workflow", "open_bus", "open_store", "parse_workflow",
        "run", "run_async", "sdk",
    }
    for name in podium.__all__:
        assert hasattr(podium, name), name


def test_the_sdk_runs_a_workflow_defined_in_python(tmp_path: Path) -> None:
    wf = podium.parse_workflow(
        {"name": "sdk", "steps": {"hello": {"kind": "sim", "output": {"msg": "hi"}}}},
        source="<sdk>",
    )
    summary = podium.run(wf, settings=podium.Settings(store=f"sqlite:///{tmp_path / 's.db'}"))
    assert summary.status == "succeeded"
    assert summary.outputs == {"hello": {"msg": "hi"}}
