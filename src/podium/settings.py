"""podium's configuration: one pydantic-settings object, read from PODIUM_* variables.

It is built once at the edge (CLI, API, bench) and passed down; nothing deeper reads the env.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from podium.control.config import ControlConfig


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PODIUM_", extra="ignore")

    store: str = Field("sqlite:///.podium/podium.db", description="store URL")
    bus: str = Field("memory://", description="bus URL")
    durability: Literal["process", "full"] = Field(
        "process",
        description="process: every commit survives SIGKILL (SQLite synchronous=NORMAL);"
        " full: also survives power loss (synchronous=FULL), at a cost in throughput",
    )
    max_active_runs: int = Field(
        1000, ge=1, description="runs executing at once in one engine; the rest wait queued"
    )
    max_output_bytes: int = Field(
        256 * 1024 * 1024, ge=1024, description="largest encoded step output the store accepts"
    )
    lease_s: float = Field(
        30.0, gt=0, description="how long a crashed engine's runs stay claimed before recovery"
    )
    store_retry_s: float = Field(
        60.0, ge=0, description="how long the engine retries a failing commit before it stops"
    )
    poll_interval_s: float = Field(
        0.2, gt=0, description="how often an engine looks for signals and cancels from elsewhere"
    )
    pricing_file: Path | None = Field(
        None,
        description="TOML, YAML or JSON file of model prices (USD per 1M tokens) and tier"
        " models, merged over the built-in list prices (podium.control.pricing)",
    )
    config: Path | None = Field(
        None,
        description="TOML file of the control layer (capacities, limits, circuits, queue TTLs,"
        " budgets); default ./podium.toml when it exists",
    )
    control: ControlConfig = Field(
        # Not read here: `load_control` reads the file and its PODIUM_<SECTION>__<KEY> overrides.
        default_factory=ControlConfig.model_construct,
        exclude=True,
        description="loaded from `config` by load_control",
    )
