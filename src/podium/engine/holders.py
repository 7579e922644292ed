"""Lease holders: who an engine's owner id names (host, pid), and whether that process is gone.

A run held by a dead process on this host need not wait for its lease to run out.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Holder:
    """An engine's owner id, `host:pid:token`, taken apart."""

    host: str
    pid: int

    @classmethod
    def parse(cls, owner: str) -> Holder | None:
        parts = owner.rsplit(":", 2)
        if len(parts) != 3 or not parts[1].isdigit():
            return None
        return cls(parts[0], int(parts[1]))

    def dead_here(self) -> bool:
        """True only when the holder ran on this host and its process no longer exists."""
        if self.host != socket.gethostname() or self.pid == os.getpid() or self.pid <= 0:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, another user's
            return False
        return _zombie(self.pid)


def _zombie(pid: int) -> bool:
    """A killed process its parent has not reaped yet still answers `kill 0`: dead all the
    same (Linux says so in /proc; elsewhere it counts as alive until reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # `pid (comm) state ...`: comm may hold spaces and parentheses; the state follows the last ")".
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def dead_here(owner: str) -> bool:
    """Whether `owner` names an engine process of this host that has died."""
    holder = Holder.parse(owner)
    return holder is not None and holder.dead_here()
