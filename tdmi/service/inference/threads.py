"""The service's threads: how many the model's operators use, and the pipeline's named ones.

torch's default is one thread per core of the machine, which oversubscribes a process confined
to fewer cores (a container's cpuset, ``taskset``): its OpenMP threads then wait for each other
at every operator. ONNX Runtime is given the same count.

The pipeline's own threads (device, prepare, finish, detect, a job's decode and encode) carry
their name down to the OS, so ``top -H``, ``ps -L`` and profilers show which stage is busy.
"""

from __future__ import annotations

import ctypes
import os
from concurrent.futures import ThreadPoolExecutor

import torch

from tdmi.service.inference.libc import libc_function

__all__ = ["apply_cpu_threads", "cpu_threads", "named_threads"]

_PR_SET_NAME = 15  # prctl(2): the calling thread's name, 15 bytes at most


_prctl = libc_function("prctl")  # None where there is no prctl (not Linux)


def _name_this_thread(name: str) -> None:
    if _prctl is not None:
        _prctl(_PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)


def named_threads(name: str, workers: int = 1) -> ThreadPoolExecutor:
    """An executor whose threads are called ``name`` in Python and in the OS (first 15 bytes)."""
    return ThreadPoolExecutor(
        max_workers=workers, thread_name_prefix=name, initializer=_name_this_thread, initargs=(name,)
    )


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
