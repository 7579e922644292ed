"""podium's configuration: PODIUM_* variables, the control config file and the pricing file.

`Settings()` reads all three, so every edge (CLI, API, worker, bench, SDK) sees the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from podium.control.config import ControlConfig, load_control
from podium.model.pricing import load_pricing

DEFAULT_CONFIG = Path("podium.toml")  # read from the working directory when it exists


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
        " models, merged over the built-in list prices (podium.model.pricing)",
    )
    config: Path | None = Field(
        None,
        description="TOML file of the control layer (capacities, limits, circuits, queue TTLs,"
        " budgets); default ./podium.toml when it exists",
    )
    control: ControlConfig = Field(
        # Not read from the env directly: `_read_files` reads the file and its overrides.
        default_factory=ControlConfig.model_construct,
        exclude=True,
        description="read from `config` and PODIUM_<SECTION>__<KEY>, priced by `pricing_file`",
    )

    @model_validator(mode="after")
    def _read_files(self) -> Settings:
        """The control config (file, then PODIUM_<SECTION>__<KEY>) and the pricing table, unless
        given: raises PodiumError naming a file that cannot be read or is invalid."""
        if "control" not in self.model_fields_set:
            config = self.config or (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None)
            self.control = load_control(config)
        if self.pricing_file is not None and "pricing" not in self.control.model_fields_set:
            pricing = load_pricing(self.pricing_file)
            self.control = self.control.model_copy(update={"pricing": pricing})
        return self
