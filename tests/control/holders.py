"""Starts a holder script of this folder (budget_holder.py, resource_holder.py) on a store and
SIGKILLs it once it says it holds something: what it held stays behind in the store."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path


async def kill_while_holding(script: str, store_url: str) -> None:
    holder = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / script), store_url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None
        assert await asyncio.to_thread(holder.stdout.readline) == "holding\n"
        holder.kill()  # SIGKILL: nothing is handed back nor renewed
        holder.wait(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=30)
        for pipe in (holder.stdout, holder.stderr):
            if pipe is not None:
                pipe.close()
