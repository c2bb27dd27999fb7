"""One embedded server per data directory: an exclusive lock held for the process's lifetime.

An embedded server treats every job its SQLite database lists as ``running`` as crashed and
runs it again. That is right only if no other live process runs those jobs, so the server holds
``flock`` on ``<data_dir>/serve.lock``: the kernel releases it when the process ends, however it
ends (a SIGKILL leaves no stale lock), and a second server on the same directory stops before it
touches a job. The lock file names the holder's pid for the message.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

__all__ = ["DataDirInUseError", "hold_data_dir", "release_data_dir"]

LOCK_NAME = "serve.lock"

# data directories this process holds, by resolved path: the CLI takes the lock before it binds
# its port, and the node that starts later in the same process finds it already held
_held: dict[Path, int] = {}


class DataDirInUseError(ValueError):
    """Another process holds the data directory (a ValueError: the CLI prints it as one line)."""


def hold_data_dir(data_dir: Path) -> bool:
    """Take the data directory's lock; True if this call took it, False if this process held it
    already. Raises ``DataDirInUseError`` naming the directory and the holder's pid."""
    folder = Path(data_dir).resolve()
    if folder in _held:
        return False
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise DataDirInUseError(
            f"data directory {folder} is in use by another tdmi serve (pid {holder}); stop it, "
            "or give this one its own --data-dir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[folder] = fd
    return True


def release_data_dir(data_dir: Path) -> None:
    """Let the directory go (a node stopped in a process that goes on, as in tests)."""
    fd = _held.pop(Path(data_dir).resolve(), None)
    if fd is not None:
        os.close(fd)  # closing the only descriptor releases the flock
