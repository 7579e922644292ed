"""Spans of runs, from the engine's committed events: one trace per run, a span per attempt.

Every step kind, retries, fallback, compensation, a run resumed by another engine, and a
`traceparent` on POST /v1/runs; spans go to an in-memory exporter.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import steplib
import tracelib
from apilib import BASE_URL, add_key, bearer, register
from clocklib import eventually
from fake_providers import OPENAI_KEY, FakeServer, running
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from steplib import make_workflow

from podium.api.app import create_app
from podium.bus import open_bus
from podium.engine.engine import Engine
from podium.errors import PodiumError
from podium.observe.context import RunTrace, attempt_span_id, parse_traceparent
from podium.observe.sampling import Sampler
from podium.observe.tracing import Tracing, tracing_configured
from podium.settings import Settings
from podium.store import open_store

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
SECRETS = {"OPENAI_API_KEY": OPENAI_KEY}


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    steplib.reset()
    tracelib.SEEN.clear()
    tracelib.GATE.clear()
    yield


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with running() as fake:
        yield fake


def _tracing(exporter: InMemorySpanExporter) -> Tracing:
    return Tracing(SimpleSpanProcessor(exporter))


@pytest.fixture
async def engine(tmp_path: Path, exporter: InMemorySpanExporter) -> AsyncIterator[Engine]:
    settings = Settings(poll_interval_s=0.02, lease_s=5, store_retry_s=0.5)
    async with (
        open_store(f"sqlite:///{tmp_path / 'podium.db'}") as store,
        open_bus() as bus,
        Engine(store, bus, settings, secrets=SECRETS) as running_engine,
    ):
        _tracing(exporter).install(running_engine)
        yield running_engine


def _by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, list[ReadableSpan]]:
    named: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        named.setdefault(span.name, []).append(span)
    return named


def _root(spans: tuple[ReadableSpan, ...]) -> ReadableSpan:
    (root,) = [s for s in spans if s.name.startswith("invoke_workflow ")]
    return root


def _check_tree(spans: tuple[ReadableSpan, ...]) -> ReadableSpan:
    """One trace; every span but the root hangs under the root or an attempt of this run."""
    root = _root(spans)
    assert root.context is not None
    assert {s.context.trace_id for s in spans if s.context} == {root.context.trace_id}
    ids = {s.context.span_id for s in spans if s.context}
    for span in spans:
        if span is not root:
            assert span.parent is not None and span.parent.span_id in ids, span.name
    return root


async def test_every_step_kind_is_a_span_under_the_run(
    engine: Engine, exporter: InMemorySpanExporter, server: FakeServer
) -> None:
    workflow = make_workflow({
        "simulated": {"kind": "sim", "output": 1},
        "code": {"kind": "python", "call": "tracelib:remember", "needs": ["simulated"]},
        "hook": {"kind": "http", "method": "POST", "url": f"{server.url}/webhook/respond",
                 "needs": ["code"]},
        "flow": {"kind": "n8n", "webhook": f"{server.url}/webhook/respond", "needs": ["hook"]},
        "ask": {"kind": "llm", "model": "gpt-4o-mini", "base_url": f"{server.url}/v1",
                "prompt": "say: hi", "needs": ["flow"]},
    }, name="kinds")
    summary = await engine.run(workflow)
    assert summary.status == "succeeded"
    spans = exporter.get_finished_spans()
    root = _check_tree(spans)
    assert root.name == "invoke_workflow kinds" and root.parent is None
    assert root.attributes is not None and root.attributes["podium.status"] == "succeeded"
    named = _by_name(spans)
    for step in ("simulated", "code", "hook", "flow"):
        (span,) = named[f"execute_tool {step}"]
        assert span.parent is not None and root.context is not None
        assert span.parent.span_id == root.context.span_id
        assert span.attributes is not None
        assert span.attributes["podium.step_id"] == step
        assert span.attributes["podium.attempt"] == 1
        assert span.attributes["podium.workflow"] == "kinds"
        assert span.attributes["podium.run_id"] == summary.run_id
        assert span.attributes["gen_ai.operation.name"] == "execute_tool"
        assert span.status.status_code == StatusCode.UNSET
    (chat,) = named["chat gpt-4o-mini"]
    attributes = dict(chat.attributes or {})
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert attributes["gen_ai.response.model"]
    assert attributes["gen_ai.usage.input_tokens"] > 0
    assert attributes["gen_ai.usage.output_tokens"] > 0
    assert tuple(attributes["gen_ai.response.finish_reasons"]) == ("stop",)
    # The requests carried their attempt's span as parent: the real span, not a made-up one.
    sent = {r["path"]: r["headers"]["traceparent"] for r in server.requests}
    for path, step in (("/webhook/respond", "flow"), ("/v1/chat/completions", "ask")):
        span = named["chat gpt-4o-mini" if step == "ask" else f"execute_tool {step}"][0]
        assert span.context is not None
        assert sent[path] == f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}-01"
    (code,) = named["execute_tool code"]
    assert code.context is not None
    assert [f"00-{code.context.trace_id:032x}-{code.context.span_id:016x}-01"] == tracelib.SEEN


async def test_a_retried_step_is_a_span_per_attempt_with_the_failures_recorded(
    engine: Engine, exporter: InMemorySpanExporter
) -> None:
    workflow = make_workflow({
        "flaky": {"kind": "python", "call": "steplib:flaky",
                  "input": {"name": "flaky", "failures": 2},
                  "retry": {"attempts": 3, "backoff": "1ms", "jitter": 0}},
    })
    assert (await engine.run(workflow)).status == "succeeded"
    spans = exporter.get_finished_spans()
    _check_tree(spans)
    attempts = sorted(_by_name(spans)["execute_tool flaky"],
                      key=lambda s: (s.attributes or {})["podium.attempt"])
    assert [(s.attributes or {})["podium.attempt"] for s in attempts] == [1, 2, 3]
    for failed in attempts[:2]:
        assert failed.status.status_code == StatusCode.ERROR
        assert (failed.attributes or {})["error.type"]
        assert [e.name for e in failed.events] == ["retry", "exception"]
        assert failed.events[1].attributes and failed.events[1].attributes["exception.type"]
    assert attempts[2].status.status_code == StatusCode.UNSET
    assert len({s.context.span_id for s in attempts if s.context}) == 3


async def test_a_fallback_is_its_own_span_after_the_failed_attempt(
    engine: Engine, exporter: InMemorySpanExporter
) -> None:
    workflow = make_workflow({
        "main": {"kind": "python", "call": "steplib:fail", "input": {"name": "main"},
                 "retry": {"attempts": 1}, "fallback": {"kind": "sim", "output": "plan b"}},
    })
    assert (await engine.run(workflow)).status == "degraded"
    spans = exporter.get_finished_spans()
    _check_tree(spans)
    primary, fallback = sorted(_by_name(spans)["execute_tool main"],
                               key=lambda s: s.start_time or 0)
    assert primary.status.status_code == StatusCode.ERROR
    assert [e.name for e in primary.events] == ["fallback", "exception"]
    assert (fallback.attributes or {})["podium.role"] == "fallback"
    assert (fallback.attributes or {})["podium.kind"] == "sim"
    assert fallback.status.status_code == StatusCode.UNSET


async def test_compensation_is_a_span_and_an_event_of_the_run(
    engine: Engine, exporter: InMemorySpanExporter
) -> None:
    workflow = make_workflow({
        "book": {"kind": "sim", "output": 1, "compensate": {"kind": "sim", "output": 0}},
        "pay": {"kind": "python", "call": "steplib:fail", "input": {"name": "pay"},
                "retry": {"attempts": 1}, "needs": ["book"]},
    })
    summary = await engine.run(workflow)
    assert summary.status == "compensated"
    spans = exporter.get_finished_spans()
    root = _check_tree(spans)
    assert root.status.status_code == StatusCode.ERROR
    assert (root.attributes or {})["error.type"] == "compensated"
    assert "compensated" in [e.name for e in root.events]
    (undo,) = _by_name(spans)["compensate book"]
    assert (undo.attributes or {})["podium.role"] == "compensate"
    (pay,) = _by_name(spans)["execute_tool pay"]
    assert pay.status.status_code == StatusCode.ERROR


async def test_a_run_resumed_by_another_engine_continues_the_same_trace(
    tmp_path: Path,
) -> None:
    """The first engine stops with the step in flight (as after a crash, its state stays in
    the store); the second recovers the run: same trace, under the same given parent."""
    settings = Settings(poll_interval_s=0.02, lease_s=5, store_retry_s=0.5)
    workflow = make_workflow({
        "wait": {"kind": "python", "call": "tracelib:held", "input": {"name": "g"}},
    }, name="resumed")
    url = f"sqlite:///{tmp_path / 'podium.db'}"
    first, second = InMemorySpanExporter(), InMemorySpanExporter()
    async with open_store(url) as store, open_bus() as bus:
        async with Engine(store, bus, settings) as engine:
            _tracing(first).install(engine)
            run_id = await engine.submit(workflow, trace_parent=PARENT)
            await eventually(lambda: len(tracelib.SEEN) == 1)
        tracelib.GATE["g"].set()
        async with Engine(store, bus, settings) as engine:
            _tracing(second).install(engine)
            assert await engine.recover() == [run_id]
            assert (await engine.wait(run_id)).status == "succeeded"
    parent = parse_traceparent(PARENT)
    assert parent is not None
    spans = second.get_finished_spans()
    root = _check_tree(spans)
    assert root.context is not None and root.parent is not None
    assert f"{root.context.trace_id:032x}" == parent[3:35]
    assert f"{root.parent.span_id:016x}" == parent[36:52]
    assert "resumed" in [e.name for e in root.events]
    # Both attempts (before and after the restart) sent the same trace id.
    assert len(tracelib.SEEN) == 2
    assert {tp and tp[3:35] for tp in tracelib.SEEN} == {parent[3:35]}
    (attempt,) = _by_name(spans)["execute_tool wait"]
    assert (attempt.attributes or {})["podium.attempt"] == 2
    # The first engine ended no attempt (it was lost with it); what it did export (its time
    # in the queue) is in the same trace.
    before = first.get_finished_spans()
    assert all(s.name == "queued" for s in before)
    assert {f"{s.context.trace_id:032x}" for s in before if s.context} <= {parent[3:35]}


async def test_a_traceparent_on_post_runs_becomes_the_run_parent(
    engine: Engine, exporter: InMemorySpanExporter
) -> None:
    key = await add_key(engine.store, "admin")
    transport = httpx.ASGITransport(app=create_app(engine))
    async with httpx.AsyncClient(
        transport=transport, base_url=BASE_URL, headers=bearer(key)
    ) as client:
        await register(client, {"name": "api-traced", "steps": {"a": {"kind": "sim"}}})
        response = await client.post(
            "/v1/runs", json={"workflow_name": "api-traced"}, headers={"traceparent": PARENT}
        )
        assert response.status_code == 201, response.text
        run_id = response.json()["run_id"]
        bad = await client.post(
            "/v1/runs", json={"workflow_name": "api-traced"},
            headers={"traceparent": "00-zzzz-not-a-traceparent-01"},
        )
        assert bad.status_code == 201  # an invalid header is ignored, not an error
    await engine.wait_done(run_id)
    await engine.wait_done(bad.json()["run_id"])
    row = await engine.store.get_run(run_id)
    assert row is not None and row.trace_parent == PARENT
    roots = [s for s in exporter.get_finished_spans() if s.name == "invoke_workflow api-traced"]
    by_run = {(s.attributes or {})["podium.run_id"]: s for s in roots}
    given = by_run[run_id]
    assert given.parent is not None and given.context is not None
    assert f"{given.context.trace_id:032x}" == PARENT[3:35]
    assert f"{given.parent.span_id:016x}" == PARENT[36:52]
    fresh = by_run[bad.json()["run_id"]]
    assert fresh.parent is None and fresh.context is not None
    assert fresh.context.trace_id == RunTrace.of(bad.json()["run_id"], None).trace_id


def test_ids_are_deterministic_and_parsing_rejects_bad_headers() -> None:
    assert attempt_span_id("r", "s", -1, 1) == attempt_span_id("r", "s", -1, 1)
    assert attempt_span_id("r", "s", -1, 1) != attempt_span_id("r", "s", -1, 2)
    assert attempt_span_id("r", "s", -1, 1) != attempt_span_id("r", "s", -1, 1, "fallback")
    assert parse_traceparent(PARENT.upper()) == PARENT
    for bad in ("", "00-" + "0" * 32 + "-b7ad6b7169203331-01", "ff" + PARENT[2:],
                PARENT + "-extra", "00-abc-def-01"):
        assert parse_traceparent(bad) is None


def test_tracing_is_on_only_when_the_otel_variables_ask() -> None:
    assert not tracing_configured({})
    assert not tracing_configured({"OTEL_TRACES_EXPORTER": "none",
                                   "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"})
    assert not tracing_configured({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"})
    assert tracing_configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert tracing_configured({"OTEL_TRACES_EXPORTER": "console"})
    assert Tracing.from_env({}) is None
    with pytest.raises(Exception, match="OTEL_EXPORTER_OTLP_PROTOCOL"):
        Tracing.from_env({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})



async def test_each_agent_turn_is_a_chat_span_under_its_attempt(
    engine: Engine, exporter: InMemorySpanExporter
) -> None:
    workflow = make_workflow({
        "research": {"kind": "llm", "model": "gpt-4o-mini", "base_url": "sim:",
                     "prompt": "facts", "input": {"q": "octopus"},
                     "tools": {"search": {"kind": "sim", "output": {"hits": ["octopus found"]},
                                          "description": "web search"}}},
    }, name="agentic")
    summary = await engine.run(workflow)
    assert summary.status == "succeeded"
    assert summary.steps["research"].output["turns"] == 2
    spans = exporter.get_finished_spans()
    named = _by_name(spans)
    (agent,) = named["invoke_agent research"]
    assert agent.context is not None
    assert (agent.attributes or {})["gen_ai.operation.name"] == "invoke_agent"
    assert (agent.attributes or {})["podium.turns"] == 2
    turns = sorted(named["chat gpt-4o-mini"], key=lambda s: (s.attributes or {})["podium.turn"])
    assert [(s.attributes or {})["podium.turn"] for s in turns] == [1, 2]
    for turn in turns:
        attributes = dict(turn.attributes or {})
        assert turn.parent is not None and turn.parent.span_id == agent.context.span_id
        assert turn.context is not None and turn.context.trace_id == agent.context.trace_id
        assert attributes["gen_ai.operation.name"] == "chat"
        assert attributes["gen_ai.request.model"] == "gpt-4o-mini"
        assert attributes["gen_ai.response.model"] == "sim:gpt-4o-mini"
        assert attributes["podium.step_id"] == "research"
        assert "gen_ai.usage.input_tokens" in attributes
        assert agent.start_time is not None and turn.start_time is not None
        assert agent.end_time is not None and turn.end_time is not None
        assert agent.start_time <= turn.start_time <= turn.end_time <= agent.end_time
    assert tuple((turns[0].attributes or {})["podium.tool_calls"]) == ("search",)
    assert "podium.tool_calls" not in (turns[1].attributes or {})
    assert len({s.context.span_id for s in turns if s.context}) == 2


def _sampled_tracing(exporter: InMemorySpanExporter, env: dict[str, str]) -> Tracing:
    return Tracing(SimpleSpanProcessor(exporter), sampler=Sampler.from_env(env))


async def test_the_sampler_drops_whole_runs_and_says_so_downstream(
    tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    """`always_off`: no span of the run, and its steps send a traceparent with the sampled
    flag clear; `parentbased_always_off` still follows a sampled parent."""
    settings = Settings(poll_interval_s=0.02, lease_s=5, store_retry_s=0.5)
    workflow = make_workflow({"code": {"kind": "python", "call": "tracelib:remember"}},
                             name="sampled")
    async with open_store(f"sqlite:///{tmp_path / 'p.db'}") as store, open_bus() as bus:
        async with Engine(store, bus, settings) as engine:
            _sampled_tracing(exporter, {"OTEL_TRACES_SAMPLER": "always_off"}).install(engine)
            assert (await engine.run(workflow)).status == "succeeded"
            assert exporter.get_finished_spans() == ()
            (sent,) = tracelib.SEEN
            assert sent is not None and sent.endswith("-00")
        async with Engine(store, bus, settings) as engine:
            env = {"OTEL_TRACES_SAMPLER": "parentbased_always_off"}
            _sampled_tracing(exporter, env).install(engine)
            assert (await engine.wait(
                await engine.submit(workflow, trace_parent=PARENT))).status == "succeeded"
            assert (await engine.run(workflow)).status == "succeeded"  # no parent: dropped
    roots = [s for s in exporter.get_finished_spans() if s.name == "invoke_workflow sampled"]
    assert [f"{s.context.trace_id:032x}" for s in roots if s.context] == [PARENT[3:35]]
    assert tracelib.SEEN[1] == f"{tracelib.SEEN[1][:-2]}01"


def test_a_ratio_decides_on_the_trace_id_as_the_sdk_does() -> None:
    from opentelemetry.sdk.trace.sampling import Decision, TraceIdRatioBased

    ratio = Sampler.from_env({"OTEL_TRACES_SAMPLER": "traceidratio",
                              "OTEL_TRACES_SAMPLER_ARG": "0.25"})
    sdk = TraceIdRatioBased(0.25)
    traces = [RunTrace.of(f"run-{n}", None).trace_id for n in range(2000)]
    ours = [ratio.sampled(t, None) for t in traces]
    assert ours == [sdk.should_sample(None, t, "x").decision == Decision.RECORD_AND_SAMPLE
                    for t in traces]
    assert 400 < sum(ours) < 600
    dropped = traces[ours.index(False)]
    assert not ratio.sampled(dropped, True)  # not parent-based: a sampled parent does not count
    based = Sampler.from_env({"OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                              "OTEL_TRACES_SAMPLER_ARG": "0"})
    assert based.sampled(traces[0], True) and not based.sampled(traces[0], None)
    assert Sampler.from_env({}).sampled(traces[0], None)
    for bad in ({"OTEL_TRACES_SAMPLER": "sometimes"},
                {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.5"},
                {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "half"}):
        with pytest.raises(PodiumError, match="OTEL_TRACES_SAMPLER"):
            Sampler.from_env(bad)
