"""A server process's memory, measured from outside while a test attacks it."""

from __future__ import annotations

import threading
from types import TracebackType

__all__ = ["RssSampler", "rss_mib"]


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` now, in MiB (``VmRSS`` of ``/proc/PID/status``)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


class RssSampler:
    """Samples a process's RSS every ``interval_s`` on a thread; ``peak`` is the largest seen.

    A bound on memory is asserted on the peak during an attack, not on the value after it: a
    server that bloats and then frees has still been bloated.
    """

    def __init__(self, pid: int, interval_s: float = 0.05):
        self.pid, self.interval_s = pid, interval_s
        self.baseline = rss_mib(pid)
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.peak = max(self.peak, rss_mib(self.pid))
            except (OSError, RuntimeError):  # the process ended: the peak so far stands
                return

    @property
    def growth(self) -> float:
        """Peak minus the RSS when sampling started, in MiB."""
        return self.peak - self.baseline

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
