"""The process's C library, for the two glibc calls the service makes (thread names, heap trim)."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Any

__all__ = ["libc_function"]


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c"))
    except (OSError, TypeError):  # no C library found (find_library gave None on an odd system)
        return None


def libc_function(name: str) -> Any | None:
    """The C library's function ``name``, or None where there is none (not Linux, not glibc)."""
    return getattr(_libc(), name, None)
