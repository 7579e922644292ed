"""examples/approval.yaml in Python: draft, wait for a human's answer, publish if approved.

    podium run examples/python/approval.py:approval -i title=Hello
    podium signal RUN approval '{"approved": true}'      # from another terminal
"""

from __future__ import annotations

from podium import sdk


@sdk.workflow(name="approval", version=1)
def approval(title: str) -> None:
    draft = sdk.sim(latency="100ms", output={"title": title, "body": "..."}).step("draft")
    answer = sdk.wait(signal="approval").step(
        "approval", needs=[draft], timeout="10m", retry=sdk.RetryPolicy(attempts=1),
        # Without an answer within the timeout the wait fails and the fallback rejects the post.
        fallback=sdk.sim(output={"approved": False, "reason": "no answer in time"}),
    )
    sdk.sim(latency="100ms", output={"published": title}).step(
        "publish", when=answer["approved"],
    )
