"""The `python` kind: call `module:function` with the step's input as keyword arguments.

Async functions run on the loop; sync ones in a thread, or in a killable subprocess (`isolate`).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import sys
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from podium.errors import NonRetryable
from podium.model.workflow import Action, PythonAction
from podium.steps.base import StepContext, StepHost, StepResult

PATH_SUMMARY_CHARS = 300  # how much of sys.path an import error shows


class CallNotFound(LookupError):
    """The call's module cannot be imported here (`imported` False) or lacks the function."""

    def __init__(self, message: str, *, imported: bool = True) -> None:
        super().__init__(message)
        self.imported = imported


def path_summary(limit: int = PATH_SUMMARY_CHARS) -> str:
    """This process's import path, cut to `limit` characters: where a module was looked for."""
    entries = [entry or "." for entry in sys.path]
    text = ", ".join(entries)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"sys.path ({len(entries)} entries): {text}"


@lru_cache(maxsize=1024)
def resolve_call(target: str) -> Callable[..., Any]:
    """`pkg.mod:func` (or `pkg.mod:Class.method`) to the callable; CallNotFound says why not."""
    module_name, _, attr_path = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # an import can raise anything; the user needs the reason
        message = f"cannot import module {module_name!r}: {exc}"
        raise CallNotFound(message, imported=False) from None
    for attr in attr_path.split("."):
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            raise CallNotFound(f"module {module_name!r} has no attribute {attr_path!r}") from None
    # A step function of the SDK (`@podium.sdk.step`) stands for the function it decorates.
    obj = getattr(obj, "__podium_function__", obj)
    if not callable(obj):
        raise CallNotFound(f"{target!r} is not callable")
    return obj  # type: ignore[no-any-return]


@lru_cache(maxsize=1024)
def _wants_ctx(func: Callable[..., Any]) -> bool:
    try:
        return "ctx" in inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False


@lru_cache(maxsize=1024)
def _is_async(func: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(func)


def _call_in_subprocess(target: str, kwargs: dict[str, Any]) -> Any:
    return resolve_call(target)(**kwargs)


class PythonRunner:
    async def run(self, action: Action, ctx: StepContext, host: StepHost) -> StepResult:
        assert isinstance(action, PythonAction)
        problem = None if ctx.policy is None else ctx.policy.check_call(action.call)
        if problem is not None:  # refused before the import: importing runs the module's code
            raise NonRetryable(f"call {action.call!r} refused: {problem}")
        try:
            func = resolve_call(action.call)
        except CallNotFound as exc:
            # Not retried: a retry runs in the same process, with the same import path.
            where = f"at worker {host.worker_id}"
            if exc.imported:
                raise NonRetryable(f"{exc} {where}") from None
            raise NonRetryable(
                f"{exc} {where}; {path_summary()}. Install the module where workers run (or"
                " start `podium worker` with it on PYTHONPATH; `--serves MODULE` checks at start)"
            ) from None
        kwargs = dict(action.input)
        if _wants_ctx(func):
            kwargs["ctx"] = ctx
        if _is_async(func):
            output = await func(**kwargs)
        elif action.isolate == "process":
            output = await _run_isolated(action.call, kwargs)
        else:
            output = await asyncio.to_thread(func, **kwargs)
        if isinstance(output, StepResult):
            return output
        return StepResult(output=output)


async def _run_isolated(target: str, kwargs: dict[str, Any]) -> Any:
    """Runs in a one-off process so a timeout can really stop it (the process is killed)."""
    from concurrent.futures import ProcessPoolExecutor

    kwargs.pop("ctx", None)  # the context holds a logger, which does not cross processes
    pool = ProcessPoolExecutor(max_workers=1)
    try:
        return await asyncio.get_running_loop().run_in_executor(
            pool, _call_in_subprocess, target, kwargs
        )
    finally:
        for process in list(getattr(pool, "_processes", {}).values()):
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)
