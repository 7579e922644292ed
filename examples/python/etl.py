"""examples/etl.yaml in Python: extract a batch, transform each record in parallel, load, report.

The step bodies are examples/etl_tasks.py's plain functions, made steps with `sdk.step(...)`;
run from examples/ so that module is importable:

    cd examples && podium run python/etl.py:etl -i batch=20
"""

from __future__ import annotations

import etl_tasks

from podium import sdk

extract = sdk.step(etl_tasks.extract)
transform = sdk.step(etl_tasks.transform, retry=sdk.RetryPolicy(attempts=3, backoff="100ms"))
load = sdk.step(etl_tasks.load)
report = sdk.step(etl_tasks.report, trigger="all_done")


@sdk.workflow(name="etl-orders", version=1)
def etl(batch: int = 12) -> None:
    extracted = extract(batch=batch)
    rows = transform.each(extracted["records"], max_parallel=4)(record=sdk.item)
    loaded = load(rows=rows)
    report(loaded=loaded)
