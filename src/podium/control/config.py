"""The operator's control configuration: capacities, limits, circuits, queue TTLs, budgets.

Read from `podium.toml` (or `PODIUM_CONFIG`) with `PODIUM_<SECTION>__<KEY>` variables winning.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from podium.errors import PodiumError
from podium.model.policy import EgressPolicy, TrustPolicy
from podium.model.pricing import DEFAULT_PRICING, Pricing
from podium.model.units import Duration, SizeMiB
from podium.model.workflow import CircuitPolicy, Limits


class _Section(BaseModel):
    # No `.inf`/`.nan`: they pass every `ge`/`le` bound silently.
    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False
    )


class Capacities(_Section):
    """What admission may hand out at once, across every engine. None: unbounded."""

    cpu: float | None = Field(None, ge=0)
    memory_mib: SizeMiB | None = Field(None, alias="memory")
    api_calls: float | None = Field(None, ge=0)  # api calls in flight at once
    agent_instances: int | None = Field(None, ge=0)  # agent steps running at once


class GlobalLimits(_Section):
    max_concurrent: int | None = Field(None, ge=1)  # step attempts in flight, all engines


class AgentControl(_Section):
    """Operator settings for one agent, over what workflows say."""

    limits: Limits | None = None
    circuit: CircuitPolicy | None = None


class Circuits(_Section):
    default: CircuitPolicy | None = None  # for steps that configure none; None: breakers off


class QueueTtl(_Section):
    """How long a run may wait queued per priority before it ends `expired`."""

    critical: Duration = 60.0
    high: Duration = 300.0
    normal: Duration = 3600.0
    low: Duration = 86400.0


class Queue(_Section):
    ttl: QueueTtl = Field(default_factory=QueueTtl)


class ScopeBudget(_Section):
    hourly_usd: float | None = Field(None, ge=0)
    daily_usd: float | None = Field(None, ge=0)


class Budgets(_Section):
    """Global and per-workflow spend limits over rolling hours and days."""

    hourly_usd: float | None = Field(None, ge=0)
    daily_usd: float | None = Field(None, ge=0)
    warn_at: float = Field(0.8, gt=0, le=1)  # fraction of a limit that raises the warning
    action: Literal["block", "throttle"] = "block"
    workflows: dict[str, ScopeBudget] = Field(default_factory=dict)


class Security(_Section):
    """What a definition that arrived over the API may do (local files run by the CLI are
    trusted as code is), and how much one request or one expression may cost."""

    # `call:` targets of API definitions: these modules and their submodules only.
    python_modules: list[str] = Field(default_factory=list)
    # Hosts that http/n8n/llm steps of API definitions may reach: `api.example.com`,
    # `*.example.com`, an IP address or a CIDR range (`10.1.0.0/16`). Empty: none.
    egress: list[str] = Field(default_factory=list)
    # Refuse private, loopback and link-local addresses (after DNS) even for allowed names,
    # unless the address itself (or its range) is listed in `egress`.
    block_private: bool = True
    max_request_bytes: int = Field(10 * 1024 * 1024, ge=1024)  # bigger request bodies: 413
    max_json_depth: int = Field(32, ge=4, le=200)  # deeper request JSON: 422

    def policy(self) -> TrustPolicy:
        """The rules an untrusted definition (from the API) is validated and run under."""
        return TrustPolicy(
            python_modules=tuple(self.python_modules),
            egress=EgressPolicy(tuple(self.egress), block_private=self.block_private),
        )


class Secrets(_Section):
    """The secrets expressions (`{{ secrets.NAME }}`) and step kinds may read; every value is
    masked (`***`) wherever podium writes text. Nothing else of the environment is visible."""

    allow: list[str] = Field(default_factory=lambda: ["OPENAI_API_KEY", "ANTHROPIC_API_KEY"])
    # TOML/JSON/YAML of NAME = "value", read over the environment. Every name in the file is
    # available (being in the file allows it); `allow` names what comes from the environment.
    file: Path | None = None


class Api(_Section):
    """`podium serve`'s browser-facing settings."""

    cors_origins: list[str] = Field(default_factory=list)  # none: no cross-origin access
    allowed_hosts: list[str] = Field(default_factory=list)  # Host headers; none: the bind host
    max_failed_auth_per_minute: int = Field(10, ge=1)  # per client address, then 429


class MetricsConfig(_Section):
    """`/metrics`: who may scrape it, and the desired-workers estimate's knobs."""

    # key: a key with `metrics:read` (role `metrics` or any other); loopback: no key needed
    # from a loopback address; none: no key needed from anywhere (the numbers are public).
    auth: Literal["key", "loopback", "none"] = "key"
    window: Duration = Field(300.0, gt=0)  # arrivals and run times are averaged over it
    drain: Duration = Field(60.0, gt=0)  # how soon a backlog should be worked off
    slots_per_worker: int = Field(100, ge=1)  # a worker's --concurrency, if none is live


class DeadlockCheck(_Section):
    """How often each engine looks for deadlocks in the store-wide wait-for graph."""

    enabled: bool = True
    check_every: Duration = Field(5.0, gt=0)


class Retention(_Section):
    """What `podium gc` deletes and, when `finished_runs` is set, how often every engine's
    control plane runs it (one process at a time per store)."""

    finished_runs: Duration | None = Field(None, gt=0)  # None: finished runs stay forever
    audit: Duration | None = Field(None, gt=0)  # None: the audit log is never pruned
    include_dlq: bool = False  # dead-lettered runs go too (else only `podium dlq purge` drops them)
    batch: int = Field(500, ge=1, le=10_000)  # runs (or audit entries) per transaction
    every: Duration = Field(3600.0, gt=0)


class ControlConfig(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PODIUM_", env_nested_delimiter="__", extra="forbid", frozen=True,
        arbitrary_types_allowed=True,
    )

    resources: Capacities = Field(default_factory=Capacities)
    limits: GlobalLimits = Field(default_factory=GlobalLimits)
    agents: dict[str, AgentControl] = Field(default_factory=dict)
    providers: dict[str, Limits] = Field(default_factory=dict)
    circuits: Circuits = Field(default_factory=Circuits)
    queue: Queue = Field(default_factory=Queue)
    budgets: Budgets = Field(default_factory=Budgets)
    security: Security = Field(default_factory=Security)
    secrets: Secrets = Field(default_factory=Secrets)
    api: Api = Field(default_factory=Api)
    deadlock: DeadlockCheck = Field(default_factory=DeadlockCheck)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    retention: Retention = Field(default_factory=Retention)
    # Not a section of the file: read from its own file (PODIUM_PRICING_FILE) by the settings.
    pricing: Pricing = Field(default_factory=lambda: DEFAULT_PRICING, exclude=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's values arrive as init arguments; the environment overrides them.
        return (env_settings, init_settings)


def load_control(path: Path | None) -> ControlConfig:
    """The control config from `path` (TOML) and PODIUM_<SECTION>__<KEY> variables."""
    data = read_config_file(path) if path is not None else {}
    where = str(path) if path is not None else "the environment"
    try:
        return ControlConfig(**data)
    except ValidationError as exc:
        problems = [f"{where}: {'.'.join(map(str, e['loc']))}: {_message(e)}" for e in exc.errors()]
        raise PodiumError("\n".join(problems)) from None


def _message(error: Any) -> str:
    message = str(error["msg"]).removeprefix("Value error, ")
    message = message[:1].lower() + message[1:]
    if error["type"] == "missing" or "(got " in message:  # our own validators name the value
        return message
    return f"{message} (got {error['input']!r})"


def read_config_file(path: Path) -> dict[str, Any]:
    """The TOML file as a dict; a missing or malformed file is a clear error."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise PodiumError(f"cannot read the config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise PodiumError(f"{path}: not valid TOML: {exc}") from None
