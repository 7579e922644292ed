"""The pricing table: defaults, snapshots, and a user file merged over them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from podium.model.pricing import DEFAULT_PRICING, DEFAULT_TIERS, PricingInvalid, load_pricing


def test_cost_is_per_million_input_and_output_tokens() -> None:
    pricing = DEFAULT_PRICING
    assert pricing.cost_usd("gpt-4o", 1_000_000, 0) == pytest.approx(2.50)
    assert pricing.cost_usd("claude-opus-4", 1000, 2000) == pytest.approx(0.015 + 0.15)


def test_a_dated_snapshot_or_alias_takes_its_base_models_price() -> None:
    pricing = DEFAULT_PRICING
    assert pricing.price("gpt-4o-2024-08-06") == pricing.price("gpt-4o")
    assert pricing.price("gpt-4o-mini-2024-07-18") == pricing.price("gpt-4o-mini")
    assert pricing.price("claude-3-5-haiku-latest") == pricing.price("claude-3-5-haiku")
    assert pricing.price("gpt-4oo") is None
    with pytest.raises(PricingInvalid, match="no price for model 'nope'"):
        pricing.cost_usd("nope", 1, 1)


def test_every_default_tier_names_a_priced_model() -> None:
    pricing = DEFAULT_PRICING
    for provider, table in DEFAULT_TIERS.items():
        for tier in ("simple", "medium", "complex", "critical"):
            assert pricing.price(table[tier]) is not None, (provider, tier)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("p.toml", '[models.gpt-4o]\ninput = 1\noutput = 2\n[models.my-llama]\ninput = 0\n'
                   'output = 0\n[tiers.openai]\nsimple = "my-llama"\n'),
        ("p.yaml", "models:\n  gpt-4o: {input: 1, output: 2}\n  my-llama: {input: 0, output: 0}\n"
                   "tiers:\n  openai: {simple: my-llama}\n"),
        ("p.json", json.dumps({"models": {"gpt-4o": {"input": 1, "output": 2},
                                          "my-llama": {"input": 0, "output": 0}},
                               "tiers": {"openai": {"simple": "my-llama"}}})),
    ],
)
def test_a_pricing_file_overrides_and_adds_models_and_tiers(
    tmp_path: Path, name: str, text: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    pricing = load_pricing(path)
    assert pricing.cost_usd("gpt-4o", 1_000_000, 1_000_000) == pytest.approx(3.0)
    assert pricing.cost_usd("my-llama", 10, 10) == 0
    assert pricing.model_for_tier("openai", "simple") == "my-llama"
    assert pricing.model_for_tier("openai", "medium") == DEFAULT_TIERS["openai"]["medium"]
    assert pricing.price("claude-opus-4") is not None  # the defaults stay


def test_a_negative_price_or_an_unknown_key_is_named_in_the_error(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("models:\n  foo: {input: -1, output: 2, cached: 1}\nextras: {}\n")
    with pytest.raises(PricingInvalid) as info:
        load_pricing(path)
    assert str(info.value).splitlines() == [
        f"{path}: models.foo.input: a price cannot be negative (got -1)",
        f"{path}: models.foo.cached: unknown key (got 1)",
        f"{path}: extras: unknown key (got {{}})",
    ]


def test_a_tier_naming_an_unpriced_model_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('[tiers.anthropic]\ncritical = "claude-9"\n')
    with pytest.raises(PricingInvalid, match=r"tiers\.anthropic\.critical: no price for model"):
        load_pricing(path)


def test_an_unreadable_or_malformed_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PricingInvalid, match="cannot read the pricing file"):
        load_pricing(tmp_path / "missing.toml")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(PricingInvalid, match="not a valid pricing file"):
        load_pricing(bad)
    with pytest.raises(PricingInvalid, match="must end in"):
        load_pricing(tmp_path / "p.ini")
