"""Token prices (USD per million tokens) and the tier -> model table of the `llm` kind.

A model's prompt-cache prices (a cached input token read, one written) come from its own
entry when given, else from its provider's rate (`CACHE_RATES`) times its input price.

`load_pricing(path)` merges a TOML, YAML or JSON file over the built-in defaults; the result
travels on the settings (`settings.control.pricing`), never as a process global.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from podium.errors import PodiumError

Provider = Literal["openai", "anthropic"]
Tier = Literal["simple", "medium", "complex", "critical"]

# Public list prices (input, output) in USD per million tokens at the time of writing.
# Providers change them: a pricing file (PODIUM_PRICING_FILE) overrides any entry and adds
# models (self-hosted ones too, at 0). A dated snapshot takes its base model's price.
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "o1": (15.00, 60.00),
    "o1-mini": (1.10, 4.40),
    "o3": (2.00, 8.00),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-3-5-sonnet": (3.00, 15.00),
    "claude-3-7-sonnet": (3.00, 15.00),
    "claude-haiku-4-5": (1.00, 5.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-sonnet-4-5": (3.00, 15.00),
    "claude-opus-4": (15.00, 75.00),
    "claude-opus-4-1": (15.00, 75.00),
}

# The list prices of prompt-cache reads (USD per million tokens) where they differ from the
# provider's rate below; the date of writing applies to them as to DEFAULT_PRICES.
DEFAULT_CACHE_READ: dict[str, float] = {
    "gpt-4.1": 0.50,
    "gpt-4.1-mini": 0.10,
    "gpt-4.1-nano": 0.025,
    "o3": 0.50,
    "o4-mini": 0.275,
}

# (cache read, cache write) as a fraction of the input price, by the model's provider:
# OpenAI bills a cached prompt token at half price and caching itself at nothing extra;
# Anthropic bills a cache read at a tenth, and a cache write (5-minute TTL) at 1.25 times.
CACHE_RATES: dict[str, tuple[float, float]] = {
    "openai": (0.50, 1.00),
    "anthropic": (0.10, 1.25),
}


def provider_of(model: str) -> str:
    """The provider whose cache rates a model follows: `claude-*` is Anthropic's, any other
    (OpenAI's, and OpenAI-compatible servers') OpenAI's."""
    return "anthropic" if model.startswith("claude") else "openai"


# Which model a step's `tier` means when it names no `model`; overridable under `tiers`.
DEFAULT_TIERS: dict[str, dict[str, str]] = {
    "openai": {
        "simple": "gpt-4o-mini",
        "medium": "gpt-4.1-mini",
        "complex": "gpt-4.1",
        "critical": "gpt-4o",
    },
    "anthropic": {
        "simple": "claude-3-5-haiku-latest",
        "medium": "claude-sonnet-4-0",
        "complex": "claude-sonnet-4-0",
        "critical": "claude-opus-4-0",
    },
}


class PricingInvalid(PodiumError):
    """A pricing file cannot be read, or a model has no price; one line per problem."""

    code = "pricing_invalid"


@dataclass(frozen=True, slots=True)
class ModelPrice:
    input_usd_per_mtok: float
    output_usd_per_mtok: float
    cache_read_usd_per_mtok: float | None = None  # None: the provider's rate (CACHE_RATES)
    cache_write_usd_per_mtok: float | None = None


def cache_prices(model: str, price: ModelPrice) -> tuple[float, float]:
    """(cache read, cache write) USD per million tokens for `model` at `price`."""
    read_rate, write_rate = CACHE_RATES[provider_of(model)]
    read = price.cache_read_usd_per_mtok
    write = price.cache_write_usd_per_mtok
    return (
        price.input_usd_per_mtok * read_rate if read is None else read,
        price.input_usd_per_mtok * write_rate if write is None else write,
    )


def missing_price(model: str) -> str:
    return f"no price for model {model!r}; add it to the pricing table (PODIUM_PRICING_FILE)"


@dataclass(frozen=True)
class Pricing:
    prices: Mapping[str, ModelPrice]
    tiers: Mapping[str, Mapping[str, str]]

    def price(self, model: str) -> ModelPrice | None:
        """The model's price; `gpt-4o-2024-08-06` or `claude-opus-4-0` (a snapshot or alias)
        takes the price of the longest listed name it extends with `-...`."""
        exact = self.prices.get(model)
        if exact is not None:
            return exact
        bases = [name for name in self.prices if model.startswith(f"{name}-")]
        return self.prices[max(bases, key=len)] if bases else None

    def cost_usd(
        self,
        model: str,
        tokens_in: int,
        tokens_out: int,
        *,
        cache_read: int = 0,
        cache_write: int = 0,
    ) -> float:
        """What a call costs; `tokens_in` counts every input token, of which `cache_read`
        were read from the prompt cache and `cache_write` written to it."""
        price = self.price(model)
        if price is None:
            raise PricingInvalid(missing_price(model))
        total = tokens_out * price.output_usd_per_mtok
        if cache_read or cache_write:
            read_usd, write_usd = cache_prices(model, price)
            plain = max(tokens_in - cache_read - cache_write, 0)
            total += cache_read * read_usd + cache_write * write_usd
        else:
            plain = tokens_in
        total += plain * price.input_usd_per_mtok
        return total / 1_000_000

    def model_for_tier(self, provider: str, tier: str) -> str:
        return self.tiers[provider][tier]


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    input: float = Field(ge=0, allow_inf_nan=False, description="USD per 1M input tokens")
    output: float = Field(ge=0, allow_inf_nan=False, description="USD per 1M output tokens")
    cache_read: float | None = Field(
        None, ge=0, allow_inf_nan=False, description="USD per 1M input tokens read from cache"
    )
    cache_write: float | None = Field(
        None, ge=0, allow_inf_nan=False, description="USD per 1M input tokens written to cache"
    )


class _Tiers(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    simple: str | None = None
    medium: str | None = None
    complex: str | None = None
    critical: str | None = None


class _File(BaseModel):
    """`{models: {name: {input, output, cache_read?, cache_write?}},
    tiers: {openai|anthropic: {simple: model, ...}}}`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    models: dict[str, _Entry] = Field(default_factory=dict)
    tiers: dict[Provider, _Tiers] = Field(default_factory=dict)


def load_pricing(path: Path | None) -> Pricing:
    """The defaults, with `path` (TOML, YAML or JSON) merged over them when given."""
    if path is None:
        return DEFAULT_PRICING
    try:
        parsed = _File.model_validate(_read(path))
    except ValidationError as exc:
        raise PricingInvalid("\n".join(_problem_lines(path, exc))) from None
    pricing = _merge(parsed)
    _check_tiers(path, pricing)
    return pricing


def _read(path: Path) -> Any:
    loaders: dict[str, Callable[[str], Any]] = {
        ".toml": tomllib.loads,
        ".yaml": yaml.safe_load,
        ".yml": yaml.safe_load,
        ".json": json.loads,
    }
    loader = loaders.get(path.suffix.lower())
    if loader is None:
        raise PricingInvalid(f"{path}: a pricing file must end in .toml, .yaml, .yml or .json")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PricingInvalid(f"{path}: cannot read the pricing file ({exc.strerror})") from None
    try:
        data = loader(text)
    except (ValueError, yaml.YAMLError) as exc:  # TOMLDecodeError and JSONDecodeError too
        reason = " ".join(str(exc).split())
        raise PricingInvalid(f"{path}: not a valid pricing file: {reason}") from None
    return {} if data is None else data


_MESSAGES = {
    "extra_forbidden": "unknown key",
    "greater_than_equal": "a price cannot be negative",
    "missing": "required",
}


def _problem_lines(path: Path, exc: ValidationError) -> list[str]:
    lines = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = _MESSAGES.get(error["type"], error["msg"])
        got = f" (got {error['input']!r})" if error["type"] != "missing" else ""
        lines.append(f"{path}: {where}: {message}{got}")
    return lines


def _merge(parsed: _File) -> Pricing:
    prices = {
        name: ModelPrice(*pair, cache_read_usd_per_mtok=DEFAULT_CACHE_READ.get(name))
        for name, pair in DEFAULT_PRICES.items()
    }
    prices.update({
        n: ModelPrice(e.input, e.output, e.cache_read, e.cache_write)
        for n, e in parsed.models.items()
    })
    tiers = {provider: dict(table) for provider, table in DEFAULT_TIERS.items()}
    for provider, table in parsed.tiers.items():
        tiers[provider].update(table.model_dump(exclude_none=True))
    frozen_tiers = {p: MappingProxyType(t) for p, t in tiers.items()}
    return Pricing(MappingProxyType(prices), MappingProxyType(frozen_tiers))


def _check_tiers(path: Path, pricing: Pricing) -> None:
    """A tier must name a priced model, or every step using it would fail validation."""
    lines = [
        f"{path}: tiers.{provider}.{tier}: {missing_price(model)} (got {model!r})"
        for provider, table in pricing.tiers.items()
        for tier, model in table.items()
        if pricing.price(model) is None
    ]
    if lines:
        raise PricingInvalid("\n".join(lines))


DEFAULT_PRICING = _merge(_File())  # the built-in list prices, when no file is given
