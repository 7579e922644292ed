"""examples/content_pipeline.yaml in Python: research, three drafts in parallel, edit, review,
publish. Every agent is a simulator: no provider is called.

    podium run examples/python/content_pipeline.py:content_pipeline -i topic=queues
"""

from __future__ import annotations

from podium import sdk

researcher = sdk.agent("researcher", sdk.sim(
    model="sim-research", latency=sdk.Latency(p50="300ms", p99="900ms"),
    tokens=sdk.Tokens(input=800, output=400), cost_usd=0.0012,
))
writer = sdk.agent("writer", sdk.sim(
    model="sim-writer", latency=sdk.Latency(p50="500ms", p99="1.5s"),
    tokens=sdk.Tokens(input=1200, output=900), cost_usd=0.0031,
))
editor = sdk.agent("editor", sdk.sim(
    model="sim-editor", latency="400ms", tokens=sdk.Tokens(input=2500, output=700),
    cost_usd=0.0024,
))


@sdk.workflow(
    name="content-pipeline", version=1, priority="normal", timeout="5m",
    description="Research a topic, draft three angles in parallel, edit, review and publish.",
)
def content_pipeline(
    topic: str = "durable AI pipelines",
    angles: list[str] = ["practitioner", "executive", "skeptic"],  # noqa: B006 (never mutated)
) -> None:
    facts = ["retries need idempotency keys", "sagas undo partial work", "queues need priorities"]
    research = sdk.sim(input={"topic": topic}, output={"facts": facts}).step(
        "research", agent=researcher, estimate="600ms",
    )
    draft = sdk.sim(
        output={"angle": sdk.item, "text": f"Draft for the {sdk.item} on {topic}"},
    ).step("draft", agent=writer, needs=[research], for_each=angles, max_parallel=3,
           estimate="1s")
    angles_done = draft.pipe("map(attribute='angle')", "join(', ')")
    edit = sdk.sim(fail_times=2, output={"text": f"Edited: {angles_done}"}).step(
        "edit", agent=editor, estimate="800ms",
        retry=sdk.RetryPolicy(attempts=3, backoff="200ms", jitter=0.1),
    )
    review = sdk.sim(model="sim-reviewer", latency="300ms", fail_rate=1.0).step(
        "review", needs=[edit], estimate="400ms",
        retry=sdk.RetryPolicy(attempts=2, backoff="100ms"),
        fallback=sdk.sim(latency="50ms", output={"approved": True, "reviewer": "fallback rubric"}),
    )
    sdk.sim(latency="200ms", output={"url": f"https://blog.example/{sdk.run.id}"}).step(
        "publish", needs=[review], optional=True, estimate="300ms",
    )
