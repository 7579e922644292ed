"""The python tool of examples/research_agent.yaml: a small offline encyclopedia.

The model calls `lookup` with JSON arguments; podium derives the tool's input schema from this
signature and checks the arguments against it before the call.
"""

from __future__ import annotations

from typing import Any

FACTS: dict[str, list[str]] = {
    "octopuses": [
        "An octopus has three hearts.",
        "Octopus blood is blue: it carries oxygen with copper-based haemocyanin.",
        "Two thirds of an octopus's neurons are in its arms.",
    ],
    "honeybees": [
        "A honeybee colony keeps its brood near 35 degrees Celsius.",
        "Forager bees tell the way to flowers with a waggle dance.",
        "A worker bee makes about a twelfth of a teaspoon of honey in its life.",
    ],
}


def lookup(topic: str, limit: int = 3) -> dict[str, Any]:
    """Up to `limit` facts about `topic` (an empty list for an unknown topic)."""
    found = FACTS.get(topic.strip().lower().rstrip("."), [])
    return {"topic": topic, "facts": found[: max(limit, 0)]}
