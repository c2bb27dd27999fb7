"""A benchmarked server as a session of its own, ended whole after its round.

A server that starts workers (LitServe's inference worker, multiprocessing's resource tracker)
would leave them running, re-parented to init, if only the process it was started as were
ended; they would then take CPU from every later measurement. Started with a new session (its
own process group), everything it starts is in that session and is ended with it: SIGTERM to the
group, a grace period, SIGKILL to the group and to any process of the session still alive.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from bench.cpu import process_start, session_pids

__all__ = ["SessionProcess"]


class SessionProcess:
    """``command`` in a new session; its output goes to ``log``."""

    def __init__(self, command: Sequence[str], log: Path, env: dict[str, str] | None = None):
        self.log_path = log
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            list(command),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        self.session = self.proc.pid  # the session's and the process group's id
        self.ended: list[tuple[int, int]] = []  # (pid, start) of every process ``stop`` ended

    def wait_healthy(self, url: str, timeout: float = 600) -> None:
        """Wait until ``url`` answers 200 (the server has loaded and warmed up its model)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.proc.args} exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{url} not healthy after {timeout} s:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, grace: float = 30.0) -> None:
        """End every process of the session; raises if one is still alive after SIGKILL. The
        processes are listed first (``ended``), so that a check can find one that left the session."""
        for pid in session_pids(self.session):
            start = process_start(pid)
            if start is not None:
                self.ended.append((pid, start))
        self._signal_group(signal.SIGTERM)
        if not self._wait_gone(grace):
            self._signal_group(signal.SIGKILL)
            for pid in session_pids(self.session):  # one that left the group but not the session
                _signal(pid, signal.SIGKILL)
        left = [] if self._wait_gone(10.0) else session_pids(self.session)
        self._log.close()
        if left:
            raise RuntimeError(f"processes {left} of session {self.session} outlived SIGKILL")

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.session, sig)

    def _wait_gone(self, timeout: float) -> bool:
        """Reap the leader and wait for the rest of the session (orphans are reaped by init)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None and not session_pids(self.session):
                return True
            time.sleep(0.05)
        return self.proc.poll() is not None and not session_pids(self.session)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
