"""How many threads a backend should use: the physical cores this process may run on."""

from __future__ import annotations

import os

import psutil


def physical_cores() -> int:
    """Physical cores available to this process (its CPU affinity, cgroup pinning, no SMT siblings)."""
    logical = psutil.cpu_count(logical=True) or os.cpu_count() or 1
    physical = psutil.cpu_count(logical=False) or logical
    try:
        allowed = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows: no affinity call
        allowed = logical
    # An allowed set smaller than the machine counts its SMT siblings too: scale it down.
    return max(1, min(physical, round(allowed * physical / logical)))


def use_every_core() -> None:
    """Compute with every physical core, as a run of its own does, in a process a scheduler started
    with fewer (Ray sets ``OMP_NUM_THREADS`` to a task's CPUs, 1 by default)."""
    import torch

    torch.set_num_threads(physical_cores())
