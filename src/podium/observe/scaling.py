"""How many workers the current load calls for: Little's law over a sliding window.

    in service = max(arrival_rate × mean_service_s, running)   (Little's law: L = λ·W)
    backlog    = queued × mean_service_s / drain_s             (slots to empty the queue in drain_s)
    desired    = ceil((in service + backlog) / slots_per_worker), at least min_workers
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ScalingPolicy:
    """The knobs of the estimate; `podium_desired_workers` is computed with these."""

    window_s: float = 300.0  # how far back arrivals and service times are looked at
    drain_s: float = 60.0  # how soon a backlog should be worked off
    slots_per_worker: int = 100  # a worker's --concurrency, when no live worker says
    min_workers: int = 0


@dataclass(frozen=True, slots=True)
class Load:
    """What the store shows over the window."""

    arrived: int  # runs created in the window
    mean_service_s: float | None  # mean run time of those that started (None: none did)
    queued: int  # runs waiting now
    running: int  # runs running now


def desired_workers(load: Load, policy: ScalingPolicy, slots_per_worker: int | None) -> int:
    """Workers needed for the arrivals of the window plus draining the queue in `drain_s`.

    With no service time measured yet (nothing started in the window), each queued or running
    run counts as one busy slot: the estimate never asks for zero while work is waiting."""
    slots = max(1, slots_per_worker or policy.slots_per_worker)
    if load.mean_service_s is None:
        busy = float(load.queued + load.running)
    else:
        service_s = max(0.0, load.mean_service_s)
        rate = load.arrived / policy.window_s
        # Runs already running hold their slots whatever the window's average says.
        busy = max(rate * service_s, float(load.running))
        busy += load.queued * service_s / policy.drain_s
    return max(policy.min_workers, math.ceil(busy / slots - 1e-9))
