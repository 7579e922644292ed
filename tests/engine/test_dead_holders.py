"""A run held by a dead process of this host is taken over at once, not when its lease ends;
a live holder, or one of another host, keeps its runs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from podium.bus.base import Bus
from podium.engine.engine import Engine
from podium.engine.holders import Holder, dead_here
from podium.model.workflow import Workflow
from podium.settings import Settings
from podium.store.base import Store

WAITING = Workflow.model_validate(
    {"name": "waiting", "steps": {"w": {"kind": "wait", "timeout": "1h"}}}
)


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_an_owner_id_names_host_and_pid_and_only_a_gone_local_process_is_dead() -> None:
    host = socket.gethostname()
    assert Holder.parse(f"{host}:123:abc") == Holder(host, 123)
    assert Holder.parse("not-an-owner") is None
    assert dead_here(f"{host}:{dead_pid()}:abc")
    assert not dead_here(f"{host}:{os.getppid()}:abc")  # alive
    assert not dead_here(f"{host}:{os.getpid()}:abc")  # this very process
    assert not dead_here(f"elsewhere.example:{dead_pid()}:abc")  # cannot tell: not ours


def test_a_killed_process_not_reaped_yet_counts_as_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        child.kill()
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # dead, left unreaped: a zombie
        assert dead_here(f"{socket.gethostname()}:{child.pid}:abc")
    finally:
        child.wait()


async def test_leases_of_a_dead_local_holder_are_released_and_live_ones_kept(
    engine: Engine, store: Store, bus: Bus, settings: Settings
) -> None:
    async with Engine(store, bus, settings) as left:  # its runs stay unfinished, unheld
        run_id, other = await left.submit(WAITING), await left.submit(WAITING)
    dead = f"{socket.gethostname()}:{dead_pid()}:feed"
    assert await store.claim_unfinished(dead, 30.0, [run_id]) == [run_id]
    [holder] = await store.lease_holders([run_id])
    assert (holder.owner, holder.runs) == (dead, 1)
    assert holder.until > store.clock.now() + 20

    foreign = f"elsewhere.example:{dead_pid()}:beef"
    assert await store.claim_unfinished(foreign, 30.0, [other]) == [other]

    assert await engine.release_dead_holders() == [dead]
    assert [h.owner for h in await store.lease_holders()] == [foreign]
    assert await store.lease_holders([run_id]) == []
