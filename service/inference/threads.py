"""How many CPU threads the model's operators use: the cores this process was given.

torch's default is one thread per core of the machine, which oversubscribes a process confined
to fewer cores (a container's cpuset, ``taskset``): its OpenMP threads then wait for each other
at every operator. ONNX Runtime is given the same count.
"""

from __future__ import annotations

import os

import torch

__all__ = ["apply_cpu_threads", "cpu_threads"]


def cpu_threads(setting: int | None) -> int:
    """``setting`` if given, else ``OMP_NUM_THREADS`` if set, else the cores this process may run on."""
    if setting is not None:
        return setting
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) > 0:
        return int(omp)
    if hasattr(os, "sched_getaffinity"):  # Linux; elsewhere every core counts
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def apply_cpu_threads(setting: int | None) -> int:
    """Set torch's intra-op threads for this process; returns the count (for ONNX Runtime too)."""
    threads = cpu_threads(setting)
    torch.set_num_threads(threads)
    return threads
