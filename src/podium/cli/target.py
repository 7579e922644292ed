"""What a command's workflow argument names: a YAML/JSON file, or a workflow defined in Python.

`pkg.module:name` (or `path/to/file.py:name`) imports the module and takes its `name`, a
`@podium.sdk.workflow` or a `podium.Workflow`; every failure is one line and exit 2.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Callable
from pathlib import Path

from podium import check
from podium.cli.common import UsageProblem
from podium.errors import WorkflowInvalid
from podium.model.workflow import Workflow
from podium.sdk import WorkflowDef
from podium.settings import Settings

_REFERENCE = re.compile(r"^(?P<module>[^:]+):(?P<name>[A-Za-z_][\w.]*)$")
_MODULE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


def load_target(target: Path, settings: Settings) -> Workflow:
    """The workflow `target` names, checked and priced from `settings`."""
    reference = None if target.is_file() else _REFERENCE.match(str(target))
    if reference is None:
        _on_path(target.resolve().parent)  # python steps may live beside it (Airflow's dags)
        return check.load_workflow(target, pricing=settings.control.pricing)
    return _from_python(reference.group("module"), reference.group("name"), settings)


def _from_python(module: str, name: str, settings: Settings) -> Workflow:
    label = f"{module}:{name}"
    if module.endswith(".py"):
        path = Path(module)
        if not path.is_file():
            raise UsageProblem(f"{label}: no such file {module}")
        _on_path(path.resolve().parent)
        module = path.stem
    if not _MODULE.match(module):
        raise UsageProblem(f"{label}: not a workflow file, nor a module:name reference")
    _on_path(Path.cwd())  # as `python -m` does, so a project's modules import from its root
    value = _attribute(_import(module, label), name, label)
    if isinstance(value, WorkflowDef):
        return _guarded(label, lambda: value.build(settings=settings))
    if isinstance(value, Workflow):  # validated again: its calls must import here too
        return check.parse_workflow(value.to_json(), label, pricing=settings.control.pricing)
    raise UsageProblem(
        f"{label} is a {type(value).__name__}, not a workflow (a @podium.sdk.workflow function"
        " or a podium.Workflow)"
    )


def _import(module: str, label: str) -> object:
    try:
        return importlib.import_module(module)
    except Exception as exc:  # importing runs the module's code: anything can come out
        raise UsageProblem(f"{label}: cannot import {module}: {_one_line(exc)}") from None


def _attribute(module: object, name: str, label: str) -> object:
    value = module
    for part in name.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise UsageProblem(f"{label}: module has no attribute {name!r}") from None
    return value


def _guarded(label: str, build: Callable[[], Workflow]) -> Workflow:
    """Runs the definition's body; its own errors become one line naming the definition."""
    try:
        return build()
    except WorkflowInvalid:
        raise
    except Exception as exc:  # the body is user code
        raise UsageProblem(f"{label}: {_one_line(exc)}") from None


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def _on_path(folder: Path) -> None:
    if str(folder) not in sys.path:
        sys.path.insert(1, str(folder))
