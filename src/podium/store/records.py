"""Rows the engine hands to the store and gets back: runs, steps, DLQ entries, signals.

Step states are mutable (the engine advances them); a Batch collects what one commit writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from podium.events import Event
from podium.model.status import RUN_FINAL, STEP_FINAL, RunStatus, StepStatus
from podium.store.spend import SpendRow

STEP_STATUSES = tuple(StepStatus)
RUN_STATUSES = tuple(RunStatus)


@dataclass(slots=True, eq=False)
class StepState:
    """One step of a run (`index` -1), or one `for_each` instance of it (`index` >= 0)."""

    run_id: str
    step_id: str
    index: int = -1
    status: str = "pending"
    attempts: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    fallback_used: bool = False
    completed_seq: int | None = None  # completion order in the run: compensation goes backwards
    wake_at: float | None = None  # a time wait's deadline, kept across restarts
    compensation_error: str | None = None
    cost_usd: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    output_blob: bytes | None = None  # the encoded output, as stored
    output: Any = None  # the decoded output (not stored twice)
    error_type: str | None = None  # a failed step's exception type (`ValueError`, `StepTimedOut`)
    traceback: str | None = None  # its traceback: user frames, truncated, secrets masked

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.run_id, self.step_id, self.index)

    @property
    def done(self) -> bool:
        return self.status in STEP_FINAL


@dataclass(slots=True, eq=False)
class RunState:
    """A run's row: what it runs (definition by digest), with which inputs, and how it ended."""

    run_id: str
    workflow: str
    workflow_version: str
    definition_digest: str
    inputs: dict[str, Any]
    priority: str = "normal"
    status: str = "queued"
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    parent_run_id: str | None = None
    cost_usd: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    owner: str | None = None
    lease_until: float | None = None
    stopping: str | None = None  # the final status a stopping run is heading for
    # False for runs of definitions that arrived over the API: their http/n8n/llm steps may
    # reach only the `[security] egress` hosts, their python steps only allowed modules.
    trusted: bool = True
    # The W3C traceparent of the span the run was started under (an API request, a parent
    # run's step); None: the run's trace starts with it. Kept so every engine that runs a
    # step of it, before or after a crash, continues the same trace.
    trace_parent: str | None = None

    @property
    def done(self) -> bool:
        return self.status in RUN_FINAL


@dataclass(frozen=True, slots=True)
class DlqEntry:
    run_id: str
    workflow: str
    status: str
    error: str | None
    failed_steps: tuple[str, ...]
    added_at: float


# A worker silent this long is forgotten: deleted by the live workers' heartbeats, and no
# longer listed (`podium workers`, the API). Shorter silences are listed as `lost`.
FORGOTTEN_AFTER_S = 600.0


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A worker's heartbeat row: who it is, how busy, and when it last said so."""

    worker_id: str
    host: str
    pid: int
    concurrency: int
    active: int
    state: str  # running | draining | stopped
    started_at: float
    heartbeat_at: float


@dataclass(frozen=True, slots=True)
class Signal:
    signal_id: int
    run_id: str
    name: str
    payload: Any
    created_at: float


@dataclass(slots=True)
class Batch:
    """Everything one commit writes. Rows are keyed, so a later change in the batch wins.

    `owner` fences the batch: rows of runs that another engine now holds are not written.
    """

    owner: str | None = None

    definitions: dict[str, bytes] = field(default_factory=dict)  # digest -> canonical JSON
    runs: dict[str, RunState] = field(default_factory=dict)
    steps: dict[tuple[str, str, int], StepState] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    dlq_add: list[DlqEntry] = field(default_factory=list)
    dlq_remove: list[str] = field(default_factory=list)
    signals_taken: list[int] = field(default_factory=list)
    spend: list[SpendRow] = field(default_factory=list)  # the costs of steps it commits

    def run_ids(self) -> set[str]:
        """Runs whose rows this batch changes (new runs included)."""
        ids = set(self.runs)
        ids.update(key[0] for key in self.steps)
        ids.update(event.correlation_id for event in self.events)
        return ids

    def __bool__(self) -> bool:
        return bool(
            self.definitions
            or self.runs
            or self.steps
            or self.events
            or self.dlq_add
            or self.dlq_remove
            or self.signals_taken
            or self.spend
        )


@dataclass(frozen=True, slots=True)
class RunPage:
    """What a page of a run listing narrows to, beyond status and workflow: a creation-time
    window, a run-id substring, and the keyset cursor (the last row shown: created_at, run_id)."""

    since: float | None = None
    until: float | None = None
    run_id_contains: str | None = None
    before: tuple[float, str] | None = None


@dataclass(frozen=True, slots=True)
class LeaseHolder:
    """An engine holding unfinished runs under a lease that has not run out yet."""

    owner: str
    runs: int
    until: float


@dataclass(frozen=True, slots=True)
class QueueStat:
    priority: str
    depth: int
    oldest_created_at: float | None


@dataclass(frozen=True, slots=True)
class RunActivity:
    """Runs over a recent window, store-wide: what the desired-workers estimate reads."""

    arrived: int  # runs created since the window's start
    mean_service_s: float | None  # mean time those that started ran (until now, if running)
    running: int  # runs running now, whenever they were created
    dead_letters: int  # entries in the dead-letter queue


# -- circuit breakers --


@dataclass(frozen=True, slots=True)
class CircuitRecord:
    """One circuit breaker's shared state, as every engine reads it."""

    key: str  # the agent's name, or the call's `kind:target`
    state: str  # closed | open | half_open
    failures: int = 0  # consecutive failed attempts
    successes: int = 0  # trial successes since it half-opened
    trials: int = 0  # trial calls in flight while half-open
    opened_at: float | None = None  # when it last opened (the cool-down counts from here)
    cooldown_s: float = 0.0  # the cool-down of the policy that opened it (for display)
    forced: bool = False  # held open by an operator until `podium circuits close`
    updated_at: float = 0.0
    trial_until: float | None = None  # trials in flight past this are presumed lost


@dataclass(frozen=True, slots=True)
class CircuitResult:
    """What a circuit store operation left behind, and the transition it made, if any."""

    circuit: CircuitRecord | None  # None: no row (a circuit never seen is closed)
    transition: str | None = None  # opened | half_opened | closed
    allowed: bool = True  # take_circuit_trial: may the call go ahead
    trial: bool = False  # take_circuit_trial: the call holds a half-open trial slot


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """An API key as stored: never the key itself, only a salted hash of its secret part."""

    key_id: str
    name: str
    role: str  # viewer | operator | developer | admin
    scope: str | None  # a glob over workflow names the key is limited to; None: every workflow
    secret_hash: str  # `scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>`
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None
    created_by: str = "system"  # the actor label of whoever created it


@dataclass(frozen=True, slots=True)
class RegisteredWorkflow:
    """A definition registered over the API (`POST /v1/workflows`), versioned by digest."""

    name: str
    version: str
    digest: str
    registered_at: float
    registered_by: str  # actor label


@dataclass(frozen=True, slots=True)
class AuditHead:
    """Where the chain ends, as recorded apart from the entries: the newest link's number and
    hash (0 and 64 zeros while the chain is empty). Keep a copy elsewhere to prove later
    that no history was cut off."""

    seq: int
    hash: str


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One link of the audit chain: an event with the hash of the link before it and its own.

    `hash = sha256(prev_hash + content_hash + str(seq))`, where `content_hash` covers every
    stored column of the event as read back (see `podium.store.audit`)."""

    seq: int
    event: Event
    prev_hash: str
    hash: str
    content_hash: str
