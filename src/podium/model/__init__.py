"""The workflow definition: pydantic models, YAML/JSON loading, validation and run inputs.

Everything here is pure: nothing is written anywhere, whatever the definition says.
"""

from __future__ import annotations

from podium.model.inputs import load_inputs_file, parse_cli_inputs, resolve_inputs
from podium.model.units import parse_duration, parse_size_mib
from podium.model.workflow import Step, Workflow

__all__ = [
    "Step",
    "Workflow",
    "load_inputs_file",
    "parse_cli_inputs",
    "parse_duration",
    "parse_size_mib",
    "resolve_inputs",
]
