"""Every step kind and policy in Python, beside its YAML twin (every_kind.yaml): the reference
for what the SDK writes. It calls real services (an LLM, a webhook): validate or plan it,

    podium plan examples/python/every_kind.py:every_kind

and run it only with OPENAI_API_KEY set and the URLs pointed at your own services.
"""

from __future__ import annotations

from typing import Annotated, Any

from podium import StepContext, sdk


@sdk.step(timeout="30s", resources=sdk.Resources(cpu=0.5, memory="256Mi"))
def normalize(tickets: list[dict[str, Any]], ctx: StepContext | None = None) -> dict[str, Any]:
    """A python step: plain code, given its input as keyword arguments."""
    return {"tickets": [{**t, "text": str(t.get("text", "")).strip()} for t in tickets]}


@sdk.step(isolate="process")
def reopen(ticket_ids: list[str]) -> None:
    """The compensation of `triage`: undo the labels it set (a real one calls the tracker)."""


classifier = sdk.agent(
    "classifier",
    sdk.llm(model="gpt-4o-mini", system="Classify the ticket: bug, question or request.",
            max_tokens=200, json_output=True),
    limits=sdk.Limits(rpm=60, max_concurrent=4),
    circuit=sdk.Circuit(failures=3, cooldown="1m"),
)


@sdk.workflow(
    name="every-kind", version="2026-01", description="Triage a support inbox, end to end.",
    priority="high", timeout="30m", budget=sdk.Budget(usd=2.0, warn_at=0.5),
    on_constrained="degrade",
)
def every_kind(
    inbox: Annotated[str, sdk.Input(description="The inbox's export URL")],
    limit: int = 20,
    notify: bool = True,
) -> None:
    fetched = sdk.http(inbox, headers={"Accept": "application/json"}, expect=[200]).step(
        "fetch", retry=sdk.RetryPolicy(attempts=5, backoff="500ms", max_backoff="10s"),
    )
    tidy = normalize(tickets=fetched["json"]["tickets"])
    triage = classifier.step(
        "triage", input={"ticket": sdk.item, "position": sdk.index},
        for_each=tidy["tickets"], max_parallel=5, estimate="2s", optional=True,
        fallback=sdk.sim(output={"json": {"label": "question"}}),
        compensate=reopen.bind(ticket_ids=sdk.expr("steps.triage.output | map(attribute='id')"
                                                   " | list")),
    )
    summary = sdk.llm(
        tier="medium", prompt=f"Summarise {limit} tickets for the on-call engineer.",
        input={"labels": triage}, cache="1h", temperature=0.2,
    ).step("summarise", trigger="all_done", description="one paragraph for a human")
    sent = sdk.n8n("https://n8n.example/webhook/triage", input={"summary": summary},
                   wait=False).step("notify", when=notify)
    review = sdk.wait(signal="reviewed", input={"run": sdk.run.id}).step(
        "review", needs=[sent], timeout="1d",
    )
    sdk.wait(delay="10m").step("cool-down", needs=[review])
    sdk.subworkflow("../approval.yaml", input={"title": f"Triage of {sdk.run.id[:8]}"}).step(
        "publish", needs=[review], trigger="none_failed",
    )
    sdk.sim(latency=sdk.Latency(p50="50ms", p99="200ms"), fail_times=1, seed=7,
            tokens=sdk.Tokens(input=10, output=5), cost_usd=0.0001).step(
        "audit", needs=[review], trigger="one_failed",
    )
