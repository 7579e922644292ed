"""Every render is bounded: loops and calls by an operations budget, built values by size."""

from __future__ import annotations

import pytest

from podium.errors import ExpressionError
from podium.model import bounds
from podium.model.expressions import check, render

CTX = {"inputs": {"n": 3, "text": "hello"}, "steps": {}, "run": {"id": "r1"}}


def refused(text: str) -> str:
    with pytest.raises(ExpressionError) as info:
        render(text, CTX)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_nested_loops_stop_at_the_operations_budget() -> None:
    text = "{% for i in range(20000) %}{% for j in range(20000) %}{% endfor %}{% endfor %}"
    message = refused(text)
    assert f"exceeds the render budget of {bounds.MAX_OPS} operations" in message


def test_a_loop_with_a_filter_condition_is_counted_too() -> None:
    text = "{% for i in range(99999) if i %}{% for j in range(99999) %}{% endfor %}{% endfor %}"
    assert "render budget" in refused(text)


def test_a_recursive_loop_pays_for_the_items_it_recurses_into() -> None:
    text = (
        "{% for x in [[1]] recursive %}"
        "{% if x is iterable %}{{ loop(range(99999)) }}{% endif %}{% endfor %}"
    )
    assert "render budget" in refused(text)


def test_a_lone_expression_over_a_lazy_filter_pays_per_item() -> None:
    assert "render budget" in refused("{{ range(99999) | map('string') | list | length }}")


def test_self_calling_macros_stop_at_the_budget_or_the_stack() -> None:
    text = "{% macro f(n) %}{{ f(n) }}{{ f(n) }}{% endmacro %}{{ f(1) }}"
    refused(text)


def test_repeating_a_string_past_the_size_limit_is_refused_before_it_is_built() -> None:
    message = refused("{{ 'a' * 500000000 }}")
    assert f"would produce 500000000 characters, over the limit of {bounds.MAX_CHARS}" in message


def test_repeating_a_list_past_the_size_limit_is_refused() -> None:
    assert "over the limit" in refused("{{ [1, 2] * 100000000 }}")


def test_a_huge_power_is_refused_before_it_is_computed() -> None:
    assert "-bit integer" in refused("{{ 10 ** 1000000000 }}")
    assert "-bit integer" in refused("{{ inputs.n ** 1000000000 }}")


@pytest.mark.parametrize(
    "text",
    [
        "{{ 'a'.ljust(1000000000) }}",
        "{{ 'a' | center(500000000) }}",
        "{{ 'a' | indent(width=1000000000) }}",
        "{{ 'a' | wordwrap(1000000000) }}",
        "{{ '{:1000000000}'.format(1) }}",
        "{{ '%1000000000d' % 1 }}",
        "{{ '%1000000000s' | format(1) }}",
        "{{ '{:900000}{:900000}'.format(1, 2) }}",
        "{{ ('a' * 1000000).replace('a', 'bb') }}",
        "{{ ('a' * 1000000) | replace('a', 'bb') }}",
        "{{ ('\n' * 1000) | indent('x' * 10000) }}",
        "{{ ('x' * 10000).join(range(1000) | list) }}",
        "{{ range(1000) | join('x' * 10000) }}",
        "{{ ('\t' * 1000).expandtabs(100000) }}",
        "{{ range(10) | list | tojson(indent=100000) }}",
    ],
)
def test_calls_and_filters_that_would_build_huge_text_are_refused(text: str) -> None:
    assert "over the limit" in refused(text)


def test_doubling_a_namespace_value_in_a_loop_stops_at_the_size_limit() -> None:
    text = (
        "{% set ns = namespace(x='aaaa') %}{% for i in range(60) %}"
        "{% set ns.x = ns.x ~ ns.x %}{% endfor %}{{ ns.x | length }}"
    )
    assert "over the limit" in refused(text)


def test_a_template_that_writes_too_much_text_stops_at_the_limit() -> None:
    text = "{% for i in range(100) %}{{ 'a' * 100000 }}{% endfor %}"
    assert f"over the limit of {bounds.MAX_CHARS}" in refused(text)


def test_lipsum_is_not_available() -> None:
    refused("{{ lipsum(n=100000) }}")


def test_a_legitimate_loop_over_a_thousand_items_renders() -> None:
    ctx = {**CTX, "inputs": {"items": [{"name": f"n{i}", "qty": i} for i in range(1000)]}}
    text = (
        "{% for item in inputs['items'] if item.qty % 2 == 0 %}"
        "{{ loop.index }}:{{ item.name | upper }}={{ item.qty * 2 }};{% endfor %}"
    )
    out = render(text, ctx)
    assert out.startswith("1:N0=0;2:N2=4;") and out.count(";") == 500


def test_ordinary_expressions_keep_working() -> None:
    assert render("{{ inputs.n * 2 + 1 }}", CTX) == 7
    assert render("{{ inputs.text * 2 }}", CTX) == "hellohello"
    assert render("{{ 2 ** 10 }}", CTX) == 1024
    assert render("{{ '%05d' % inputs.n }}", CTX) == "00003"
    assert render("{{ '{:>6}'.format(inputs.text) }}", CTX) == " hello"
    assert render("{{ inputs.text | center(9) }}", CTX) == "  hello  "
    assert render("{{ [1, 2, 3] | map('string') | join(', ') }}", CTX) == "1, 2, 3"
    assert render("{{ {'a': 1} | tojson(indent=2) }}", CTX) == '{\n  "a": 1\n}'
    assert render("{% for x in [1, 2] %}{{ x }}{% else %}none{% endfor %}", CTX) == "12"


def test_the_budget_is_per_render_not_per_process() -> None:
    text = "{% for i in range(15000) %}{% endfor %}ok"
    for _ in range(5):
        assert render(text, CTX) == "ok"


def test_env_in_an_expression_is_a_validation_problem() -> None:
    problems = check({"url": "{{ env.API_KEY }}"})
    assert any("`env` is not available; use secrets.NAME" in p for p in problems)
    assert check({"url": "{{ secrets.API_KEY }}"}) == []
    assert check({"url": "{% set env = 1 %}{{ env }}"}) == []
