"""Errors raised by podium, under one root.

PodiumError
 ├── WorkflowInvalid        bad definition or inputs (CLI exit 2, HTTP 422)
 ├── RunNotFound            no run with that id (HTTP 404)
 ├── RunFinished            signal/cancel sent to a run that already ended
 ├── StoreError             the store failed for good: not retried (HTTP 500)
 │    └── StoreUnavailable  for now: a lost connection, a busy database; retried (HTTP 503)
 ├── EngineStopped          a background duty of the engine failed unexpectedly: it stopped
 ├── AdmissionRejected      a run's resources cannot be had (now, or ever): not submitted
 ├── OutputTooLarge         a step output exceeds the configured maximum
 └── StepError              raised inside a step attempt
      ├── StepTimedOut      the attempt ran past its timeout
      ├── NonRetryable      a step author says: do not retry this
      │    ├── CircuitOpen   an open circuit breaker refused the call (no call made)
      │    └── BudgetExceeded  the call would take a budget past its limit (no call made)
      ├── Retry             a step author says: retry, after this delay
      └── ExpressionError   a {{ }} expression failed at run time
"""

from __future__ import annotations


class PodiumError(Exception):
    """Root of every error podium raises on purpose; str() is a user-facing sentence."""

    code = "podium_error"


class WorkflowInvalid(PodiumError):
    """A workflow definition or its inputs are invalid; `problems` holds one line each."""

    code = "workflow_invalid"

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class RunNotFound(PodiumError):
    code = "run_not_found"

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"no run with id {run_id!r}; `podium runs` lists the known runs")


class RunFinished(PodiumError):
    code = "run_finished"

    def __init__(self, run_id: str, status: str, action: str) -> None:
        super().__init__(f"cannot {action} run {run_id}: it already ended with status {status}")


class StoreError(PodiumError):
    """A store failure that trying again will not mend: a constraint violated, a missing
    definition, a closed store, a bad schema name. The message names the cause."""

    code = "store_error"
    transient = False


class StoreUnavailable(StoreError):
    """A store failure that may pass: a lost connection, a serialization failure, a locked
    database. The journal retries these (for `store_retry_s`); nothing else does."""

    code = "store_unavailable"
    transient = True


class EngineStopped(PodiumError):
    """A background duty of the engine (lease renewal, request polling, control upkeep)
    ended with an unexpected exception: the engine stopped, its runs wait in the store for
    a restart to recover them."""

    code = "engine_stopped"

    def __init__(self, duty: str, cause: BaseException) -> None:
        self.duty = duty
        text = " ".join(str(cause).split())
        super().__init__(
            f"the engine stopped: its background duty {duty} failed with"
            f" {type(cause).__name__}: {text}; a restart recovers its runs"
        )


class AdmissionRejected(PodiumError):
    """A run needs more of a resource than is free (`on_constrained: reject`) or than exists
    at all: nothing was submitted. Names the resource, the need and what is free."""

    code = "admission_rejected"

    def __init__(self, workflow: str, resource: str, needed: float, free: float, why: str) -> None:
        self.resource, self.needed, self.free = resource, needed, free
        super().__init__(
            f"workflow {workflow} was not admitted: it needs {needed:g} {resource} at its peak"
            f" and {free:g} {why}; raise [resources] {resource} or lower the steps' resources"
        )


class OutputTooLarge(PodiumError):
    code = "output_too_large"

    def __init__(self, step_id: str, size_bytes: int, max_bytes: int) -> None:
        super().__init__(
            f"output of step {step_id} is {size_bytes} bytes, over the maximum of {max_bytes};"
            " raise PODIUM_MAX_OUTPUT_BYTES or store the data elsewhere and return a reference"
        )


class StepError(PodiumError):
    """A step attempt failed; the engine's retry/fallback rules decide what follows."""

    code = "step_error"
    retryable = True
    # Set by the executor on a failed attempt: the exception's type (the step body's own, for
    # an exception it raised) and its traceback, truncated and with secrets masked.
    error_type: str | None = None
    traceback: str | None = None


class StepTimedOut(StepError):
    code = "step_timed_out"

    def __init__(self, step_id: str, timeout_s: float) -> None:
        super().__init__(f"step {step_id} timed out after {timeout_s:g}s")


class NonRetryable(StepError):
    """Raise from a step body to skip the remaining retries (the fallback still runs)."""

    code = "non_retryable"
    retryable = False


class CircuitOpen(NonRetryable):
    """An open (or fully busy half-open) circuit refused the attempt: nothing was called, and
    no retry is made against it; the step goes straight to its fallback."""

    code = "circuit_open"

    def __init__(self, circuit: str, why: str) -> None:
        self.circuit = circuit
        super().__init__(f"circuit {circuit} is open: {why}; the call was not made")


class BudgetExceeded(NonRetryable):
    """A call would take a budget scope past its limit: it was not made, and no
    retry is made; the step goes to its fallback, or fails (degrades the run if optional).
    The message starts `budget_exceeded:` and names the scope, its limit and its spend."""

    code = "budget_exceeded"


class DeadlockDetected(NonRetryable):
    """The step waited for a pool slot in a cycle of waits (a deadlock) and was the youngest
    waiter in it: its wait was failed to break the cycle. The message names the cycle."""

    code = "deadlock"


class Retry(StepError):
    """Raise from a step body to ask for another attempt after `after` seconds."""

    code = "retry"

    def __init__(self, message: str = "retry requested", after: float | None = None) -> None:
        self.after = after
        super().__init__(message)


class ExpressionError(StepError):
    code = "expression_error"
    retryable = False
