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


def compute_threads() -> int:
    """Threads a backend computes with on a CPU: the physical cores this process may use, or fewer
    where torch was told fewer (``OMP_NUM_THREADS``, ``torch.set_num_threads``, ``use_cores``).
    torch's default counts SMT siblings on some builds, which slows matrix kernels down."""
    import torch

    return max(1, min(physical_cores(), torch.get_num_threads()))


def use_cores(declared: float) -> int:
    """Compute with the CPUs a scheduler's node declares (at most the physical cores), in a process
    it started with fewer threads (Ray sets ``OMP_NUM_THREADS`` to a task's CPUs, 1 by default);
    the number of threads."""
    import torch

    threads = max(1, min(physical_cores(), int(declared)))
    torch.set_num_threads(threads)
    return threads
