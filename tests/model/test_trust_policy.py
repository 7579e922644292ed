"""An untrusted definition may call only allowed modules, reach only allowed hosts, and name
only registered workflows; a trusted one (no policy) keeps today's freedom."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from podium.check import parse_workflow
from podium.errors import WorkflowInvalid
from podium.model.policy import EgressPolicy, TrustPolicy

POLICY = TrustPolicy(
    python_modules=("json",),
    egress=EgressPolicy(allow=("api.example.com", "*.corp.example", "10.1.0.0/16", "127.0.0.1")),
)


def problems(steps: dict[str, Any], policy: TrustPolicy | None = POLICY) -> list[str]:
    try:
        parse_workflow({"name": "wf", "steps": steps}, "api", policy=policy)
    except WorkflowInvalid as exc:
        return exc.problems
    return []


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://api.example.com/v1", True),
        ("https://API.example.com./v1", True),
        ("https://evil.example.com/", False),
        ("https://x.corp.example/a", True),
        ("https://a.b.corp.example/a", True),
        ("https://corp.example/a", False),  # `*.` matches subdomains only
        ("http://10.1.2.3:8080/", True),  # listed range, private but listed itself
        ("http://10.2.0.1/", False),
        ("http://127.0.0.1:9/", True),
        ("http://127.0.0.2/", False),
        ("http://[::ffff:127.0.0.2]/", False),
        ("http://169.254.169.254/latest/meta-data", False),
        ("file:///etc/passwd", False),
        ("ftp://api.example.com/", False),
        ("gopher://api.example.com/", False),
    ],
)
def test_check_url_judges_scheme_name_address_and_range(url: str, allowed: bool) -> None:
    problem = POLICY.egress.check_url(url)
    assert (problem is None) is allowed, problem


def test_a_private_address_in_a_listed_public_range_is_refused_with_block_private() -> None:
    policy = EgressPolicy(allow=("0.0.0.0/0",))
    assert policy.check_url("http://8.8.8.8/") is None
    assert "private" in (policy.check_url("http://192.168.1.1/") or "")
    assert EgressPolicy(allow=("0.0.0.0/0",), block_private=False).check_url(
        "http://192.168.1.1/"
    ) is None


async def test_check_resolved_refuses_a_name_that_resolves_to_loopback() -> None:
    policy = EgressPolicy(allow=("localhost",))
    problem = await policy.check_resolved("http://localhost:8080/x?token=SECRET")
    assert problem is not None and "localhost resolves to" in problem and "SECRET" not in problem
    allowed = EgressPolicy(allow=("localhost", "127.0.0.0/8", "::1"))
    assert await allowed.check_resolved("http://localhost:8080/x") is None


def test_a_python_call_outside_python_modules_is_refused_without_importing_it() -> None:
    name = "podium_never_imported_probe"
    found = problems({"s": {"kind": "python", "call": f"{name}:run"}})
    assert found == [
        f"error: api: steps.s.call: module {name!r} is not in [security] python_modules"
    ]
    assert name not in sys.modules
    assert problems({"s": {"kind": "python", "call": "os:system"}}) == [
        "error: api: steps.s.call: module 'os' is not in [security] python_modules"
    ]


def test_allowed_modules_and_their_submodules_may_be_called() -> None:
    assert problems({"s": {"kind": "python", "call": "json:dumps"}}) == []
    assert problems({"s": {"kind": "python", "call": "json.decoder:JSONDecoder"}}) == []
    assert problems({"s": {"kind": "python", "call": "jsonschema_x:f"}}) != []


def test_a_templated_call_is_refused() -> None:
    found = problems({"s": {"kind": "python", "call": "json:{{ inputs.f }}"}}, POLICY)
    assert any("steps.s.call: a templated call is not allowed" in p for p in found)


def test_workflow_files_and_inline_definitions_are_refused(tmp_path: Path) -> None:
    child = tmp_path / "child.yaml"
    child.write_text("name: child\nsteps:\n  a: {kind: sim}\n")
    for target in (str(child), "child.yaml", "../x.yml", "sub/child.json"):
        found = problems({"s": {"kind": "workflow", "workflow": target}})
        assert any("steps.s.workflow: only registered workflow names" in p for p in found)
    inline = {"kind": "workflow", "workflow": "child", "definition": {"name": "c", "steps": {}}}
    assert any("steps.s.definition: an inline definition" in p for p in problems({"s": inline}))
    assert problems({"s": {"kind": "workflow", "workflow": "registered-name"}}) == []


def test_static_targets_outside_egress_are_refused_for_every_kind_and_part() -> None:
    steps = {
        "h": {"kind": "http", "url": "http://169.254.169.254/"},
        "n": {"kind": "n8n", "webhook": "https://n8n.evil.test/webhook/x"},
        "l": {"kind": "llm", "model": "gpt-4o-mini", "prompt": "hi", "base_url": "http://10.9.0.1"},
        "f": {
            "kind": "sim",
            "fallback": {"kind": "http", "url": "https://evil.test/"},
            "compensate": {"kind": "python", "call": "os:system"},
        },
        "t": {"kind": "http", "url": "{{ inputs.url }}"},  # templated: checked when it runs
        "ok": {"kind": "http", "url": "https://api.example.com/x"},
    }
    found = problems(steps)
    assert [p.split(":")[2].strip() for p in found] == [
        "steps.h.url",
        "steps.n.webhook",
        "steps.l.base_url",
        "steps.f.fallback.url",
        "steps.f.compensate.call",
    ]


def test_an_agent_cannot_smuggle_a_forbidden_target() -> None:
    data = {
        "name": "wf",
        "agents": {"a": {"kind": "http", "url": "http://127.0.0.5/"}},
        "steps": {"s": {"agent": "a"}},
    }
    with pytest.raises(WorkflowInvalid, match=r"steps\.s\.url: host 127\.0\.0\.5 is not"):
        parse_workflow(data, "api", policy=POLICY)


def test_api_key_env_is_refused_under_a_policy() -> None:
    step = {"kind": "llm", "model": "gpt-4o-mini", "prompt": "hi", "api_key_env": "AWS_SECRET"}
    assert any("steps.s.api_key_env" in p for p in problems({"s": step}))
    assert problems({"s": step}, policy=None) == []


def test_without_a_policy_everything_stays_allowed(tmp_path: Path) -> None:
    steps = {
        "h": {"kind": "http", "url": "http://127.0.0.1/"},
        "p": {"kind": "python", "call": "os.path:join"},
    }
    assert problems(steps, policy=None) == []


def test_parse_workflow_names_its_source_workflow_by_default() -> None:
    with pytest.raises(WorkflowInvalid, match=r"^error: workflow: "):
        parse_workflow({"name": "x"})
