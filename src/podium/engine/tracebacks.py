"""A failed step's traceback as stored and shown: the step author's frames, truncated.

Frames of podium itself and of asyncio (the runner that called the step) are dropped when
user frames remain; at most `LIMIT` frames per exception and `MAX_CHARS` characters are kept
(the end, where the error is, wins). Secrets are masked by the caller.
"""

from __future__ import annotations

import asyncio
import traceback
from pathlib import Path

LIMIT = 30  # frames per exception in the chain, the innermost kept
MAX_CHARS = 8 * 1024
_HEADER = "Traceback (most recent call last):"
# podium's package directory from this file's place in it: importing `podium` (the SDK, above
# every layer) from here would point the layers the wrong way.
_PODIUM_DIR = Path(__file__).parent.parent
_INTERNAL = tuple(str(d) for d in (_PODIUM_DIR, Path(asyncio.__file__).parent))


def _is_internal(filename: str) -> bool:
    return filename.startswith(_INTERNAL) or filename.startswith("<frozen ")


def _user_frames(tb: traceback.TracebackException) -> None:
    """Drops internal frames from every exception of the chain (kept if nothing else is left)."""
    seen: set[int] = set()
    todo: list[traceback.TracebackException | None] = [tb]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        frames = [f for f in current.stack if not _is_internal(f.filename)]
        if frames:
            current.stack = traceback.StackSummary.from_list(frames[-LIMIT:])
        todo += [current.__cause__, current.__context__, *(current.exceptions or ())]


def format_traceback(exc: BaseException) -> str:
    """The exception's traceback (its causes included), user frames only, at most MAX_CHARS."""
    tb = traceback.TracebackException.from_exception(exc, limit=-LIMIT, lookup_lines=True)
    _user_frames(tb)
    # Without the "Traceback (most recent call last):" headers: this is a report of the
    # step's failure, not podium crashing (which never shows a traceback to the user).
    text = "".join(line for line in tb.format() if not line.startswith(_HEADER)).rstrip("\n")
    if len(text) > MAX_CHARS:
        text = "... (truncated)\n" + text[-(MAX_CHARS - 16):]
    return text


def shorten(text: str, lines: int = 12) -> str:
    """The last `lines` lines of a traceback (the innermost frames and the error), for a
    terminal; the whole stays in `podium status --json`."""
    kept = text.splitlines()
    if len(kept) <= lines:
        return text
    return "\n".join(["...", *kept[-lines:]])
