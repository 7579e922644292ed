"""Tracing tests reuse the step bodies, the fake providers and the API helpers of other suites."""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
for folder in ("engine", "steps", "api"):
    if str(TESTS / folder) not in sys.path:
        sys.path.append(str(TESTS / folder))
