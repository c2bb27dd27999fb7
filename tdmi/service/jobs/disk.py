"""The data directory's disk: its usage for ``/metrics``, and the free space an upload needs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tdmi.service.errors import RETRY_AFTER_S, ApiError
from tdmi.service.faults import DISK_FULL
from tdmi.service.metrics import ServiceMetrics

__all__ = ["check_free_space", "data_dir_bytes", "insufficient_storage", "watch_data_dir"]


def data_dir_bytes(root: Path) -> int:
    """Bytes of the files under ``root``; files that vanish during the walk are skipped."""
    total = 0
    for folder, _, names in os.walk(root):
        for name in names:
            try:
                total += os.stat(os.path.join(folder, name), follow_symlinks=False).st_size
            except FileNotFoundError:
                continue
    return total


def watch_data_dir(metrics: ServiceMetrics, root: Path) -> None:
    """``tdmi_data_dir_bytes`` is measured when it is scraped."""
    metrics.data_dir_bytes.set_function(lambda: data_dir_bytes(root))


def insufficient_storage() -> ApiError:
    """The answer to a full disk seen before writing: the same as to one met while writing."""
    headers = {"Retry-After": str(RETRY_AFTER_S)}
    return ApiError(DISK_FULL.status, DISK_FULL.kind, DISK_FULL.detail, headers)


def check_free_space(folder: Path, min_free_bytes: int, incoming: int = 0) -> None:
    """507 before reading an upload that would leave less than ``min_free_bytes`` free."""
    if shutil.disk_usage(folder).free - incoming < min_free_bytes:
        raise insufficient_storage()
