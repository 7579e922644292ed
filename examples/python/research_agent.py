"""examples/research_agent.yaml in Python: a model with two tools, bounded, with a typed answer.

    cd examples && podium run python/research_agent.py:research_agent -i topic=octopuses

The tools are actions of any kind; `output_schema` also takes a pydantic model
(`output_schema=Findings`), sent as its JSON Schema.
"""

from __future__ import annotations

from typing import Annotated

from podium import sdk

FINDINGS = {
    "type": "object",
    "properties": {
        "answer": {"type": "string"},
        "facts": {"type": "array", "items": {"type": "string"}, "minItems": 1},
    },
    "required": ["answer", "facts"],
}
SEARCH_INPUT = {
    "type": "object",
    "properties": {"q": {"type": "string", "description": "the search query"}},
    "required": ["q"],
}


@sdk.workflow(
    name="research-agent",
    description="Find facts about a topic with two tools, then answer as JSON",
)
def research_agent(
    topic: str = "octopuses",
    model: Annotated[str, sdk.Input(description="a model in the pricing table")] = "gpt-4o-mini",
    llm_url: Annotated[
        str, sdk.Input(description="sim: for the simulated model; else the provider's base URL")
    ] = "sim:",
) -> None:
    research = sdk.llm(
        model=model,
        base_url=llm_url,
        system="You are a careful researcher. Use the tools to find facts, then answer.",
        prompt="Find three facts about the topic below.",
        input={"topic": topic},
        output_schema=FINDINGS,
        max_tokens=800,
        tools={
            "lookup": sdk.Tool(
                action=sdk.python("research_tools:lookup"),
                description="Look a topic up in the offline encyclopedia.",
                retry=sdk.RetryPolicy(attempts=2, backoff=0.1),
            ),
            "web_search": sdk.Tool(
                action=sdk.sim(
                    latency=0.2,
                    output={"results": [f"{sdk.inputs.q}: a simulated search result"]},
                ),
                description="Search the web; returns result snippets.",
                input_schema=SEARCH_INPUT,
            ),
        },
        loop=sdk.AgentLoop(max_turns=6, max_tool_calls=12, max_usd=0.05, timeout="2m"),
    ).step("research", timeout="5m")
    sdk.sim(output={"facts": research["facts"]}).step("report")
