"""Files in the data directory that no job will ever read again, found and removed.

A process killed mid-upload leaves ``uploads/<id>`` with no job; a run killed while writing leaves
its ``.part`` overlay and ``.tmp`` result; a Redis that restarts empty forgets jobs whose uploads
stay on the shared disk; a run given back leaves the files of its token. Each of these is a file
whose job is unknown, or a job's file that is not one of its current files. Files younger than
``grace_s`` are left alone: on shared storage another node may be writing them right now (an
upload in progress, a run's partial overlay). An embedded server sweeps with no grace at start-up,
before it serves (it holds the data directory alone, ``tdmi.service.data_dir_lock``).
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path

from tdmi.protocol.jobs import JOB_ID_PATTERN
from tdmi.service.jobs.queue import JobQueue

__all__ = ["JOB_FOLDERS", "sweep_leftovers"]

log = logging.getLogger("tdmi.jobs")

JOB_FOLDERS = ("uploads", "results", "videos")
# every name a job's files take: <id><suffix>, <id>.<token>.json|mp4, and the temporary forms
# .<name>.part (overlay being written) and .<name>.<random>.tmp (write_json_atomic)
_JOB_FILE = re.compile(rf"\.?({JOB_ID_PATTERN})[.\w-]*")


async def sweep_leftovers(queue: JobQueue, data_dir: Path, grace_s: float, now: float | None = None) -> int:
    """Remove leftover files older than ``grace_s``; answers how many went."""
    cutoff = (time.time() if now is None else now) - grace_s
    removed = 0
    for path in _candidates(data_dir, cutoff):
        match = _JOB_FILE.fullmatch(path.name)
        if match is None:  # not a name a job's file takes: not ours to judge
            continue
        if not path.name.startswith("."):  # a temporary file is never current
            record = await queue.get(match.group(1))
            if record is not None and path.resolve() in {p.resolve() for p in record.files()}:
                continue
        try:
            path.unlink()
        except FileNotFoundError:  # removed meanwhile (a DELETE, the run's own clean-up)
            continue
        removed += 1
    if removed:
        log.info("removed %d leftover files from %s", removed, data_dir)
    return removed


def _candidates(data_dir: Path, cutoff: float) -> list[Path]:
    """Plain files of the job folders last modified before ``cutoff``."""
    found = []
    for folder in JOB_FOLDERS:
        try:
            entries = list(os.scandir(data_dir / folder))
        except FileNotFoundError:
            continue
        for entry in entries:
            try:
                if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                    found.append(Path(entry.path))
            except FileNotFoundError:
                continue
    return found
