"""Two `podium worker` processes on one PostgreSQL store and Redis bus export one run's spans
over real OTLP/HTTP to a receiver here, which decodes them with opentelemetry-proto.

Worker A runs the first steps and stops while a step waits for a signal; worker B resumes
the run: one trace, every parent link intact, the GenAI attributes on the llm span.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from clocklib import eventually
from fake_providers import OPENAI_KEY, FakeServer, running
from redislib import redis_prefix, redis_url
from tracelib import ReceivedSpan, Receiver, receiving

from podium.bus import open_bus
from podium.engine.engine import Engine
from podium.model.workflow import Workflow
from podium.settings import Settings
from podium.store import open_store

HERE = Path(__file__).resolve().parent
__all__ = ["redis_prefix"]  # the fixture, used by name
PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def bus_url(redis_prefix: str) -> str:
    """A Redis bus of this test's own (fails under CI=true when Redis is unreachable)."""
    return redis_url(redis_prefix)


@pytest.fixture
def provider() -> Iterator[FakeServer]:
    with running() as fake:
        yield fake


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as server:
        yield server


class Workers:
    def __init__(self, tmp: Path, store: str, bus: str, endpoint: str) -> None:
        self.tmp, self.store, self.bus, self.endpoint = tmp, store, bus, endpoint
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, name: str) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH"))
                                          if p),
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.endpoint,
            "OTEL_SERVICE_NAME": f"podium-{name}",
            "OTEL_BSP_SCHEDULE_DELAY": "50",
            "PODIUM_LEASE_S": "2",
            "PODIUM_POLL_INTERVAL_S": "0.05",
            "OPENAI_API_KEY": OPENAI_KEY,
        }
        log = (self.tmp / f"worker-{name}.log").open("wb")
        with log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "podium.cli.app", "worker", "--concurrency", "4",
                 "--drain", "0.2", "--store", self.store, "--bus", self.bus],
                cwd=self.tmp, env=env, stdout=log, stderr=log,
            )
        self.procs.append(proc)
        return proc

    async def stop(self, proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(proc.wait, 30)

    def logs(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.tmp.glob("worker-*.log")))


@pytest.fixture
async def workers(
    tmp_path: Path, postgres_url: str, bus_url: str, receiver: Receiver
) -> AsyncIterator[Workers]:
    group = Workers(tmp_path, postgres_url, bus_url, receiver.endpoint)
    try:
        yield group
    finally:
        for proc in group.procs:
            if proc.poll() is None:
                proc.kill()
                await asyncio.to_thread(proc.wait, 30)


def _named(spans: list[ReceivedSpan], name: str) -> list[ReceivedSpan]:
    return [s for s in spans if s.name == name]


async def test_a_run_across_two_workers_is_one_connected_trace(
    workers: Workers, receiver: Receiver, provider: FakeServer, postgres_url: str,
    bus_url: str,
) -> None:
    workflow = Workflow.model_validate({
        "name": "otlp-two",
        "steps": {
            "first": {"kind": "sim", "output": 1},
            "gate": {"kind": "wait", "signal": "go", "needs": ["first"]},
            "ask": {"kind": "llm", "model": "gpt-4o-mini", "base_url": f"{provider.url}/v1",
                    "prompt": "say: hi", "needs": ["gate"]},
            "last": {"kind": "python", "call": "tracelib:remember", "needs": ["ask"]},
        },
    })
    settings = Settings(poll_interval_s=0.05, lease_s=2)
    async with (
        open_store(postgres_url) as store,
        open_bus(bus_url) as bus,
        Engine(store, bus, settings) as engine,
    ):
        a = workers.spawn("a")
        run_id = await engine.submit(workflow, trace_parent=PARENT)

        async def gate_waits() -> bool:
            steps = {s.step_id: s.status for s in await store.get_steps(run_id)}
            return steps.get("gate") == "running" and bool(
                _named(receiver.received(), "execute_tool first")
            )

        await eventually(gate_waits, timeout_s=60)
        await workers.stop(a)  # its in-flight attempt is lost; its lease released
        workers.spawn("b")
        await engine.signal(run_id, "go")
        await asyncio.wait_for(engine.wait_done(run_id), 60)  # a bound: it ends when the run does
        assert (await engine.summary(run_id)).status == "succeeded", workers.logs()
        await eventually(
            lambda: bool(_named(receiver.received(), "invoke_workflow otlp-two")), timeout_s=60
        )
    spans = receiver.received()
    trace_ids = {s.trace_id for s in spans}
    assert trace_ids == {PARENT[3:35]}, workers.logs()
    (root,) = _named(spans, "invoke_workflow otlp-two")
    assert root.parent_span_id == PARENT[36:52]
    ids = {s.span_id for s in spans}
    for span in spans:
        if span is not root:
            assert span.parent_span_id in ids, span.name
    (first,) = _named(spans, "execute_tool first")
    assert first.service == "podium-a" and root.service == "podium-b"
    (chat,) = _named(spans, "chat gpt-4o-mini")
    assert chat.service == "podium-b"
    assert chat.attributes["gen_ai.operation.name"] == "chat"
    assert chat.attributes["gen_ai.provider.name"] == "openai"
    assert chat.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert chat.attributes["gen_ai.response.model"]
    assert chat.attributes["gen_ai.usage.input_tokens"] > 0
    assert chat.attributes["gen_ai.usage.output_tokens"] > 0
    assert chat.attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert chat.attributes["podium.run_id"] == run_id
    sent = [r["headers"]["traceparent"] for r in provider.requests]
    assert sent == [f"00-{chat.trace_id}-{chat.span_id}-01"]
    (gate,) = _named(spans, "execute_tool gate")  # the attempt worker B finished
    assert gate.attributes["podium.attempt"] == 2 and gate.service == "podium-b"
