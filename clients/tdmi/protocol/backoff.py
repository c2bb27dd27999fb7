"""Exponential backoff: how long to wait before trying again to reach something that is away.

The SDK waits this way before reconnecting a live stream, the server's nodes before reaching
Redis again. It lives here, beside the wire contract, because both sides need it and the SDK must
never import the server; it imports nothing but the standard library.
"""

from __future__ import annotations

__all__ = ["BackoffSchedule"]


class BackoffSchedule:
    """Waits that double after each failed attempt up to ``cap_s``; a success starts them over."""

    def __init__(self, first_s: float, cap_s: float):
        self.first_s, self.cap_s = first_s, cap_s
        self.failures = 0

    def next_delay(self) -> float:
        """Count a failed attempt; the wait before the next one."""
        self.failures += 1
        return float(min(self.first_s * 2.0 ** (self.failures - 1), self.cap_s))

    def reset(self) -> None:
        """An attempt succeeded: the next failure waits ``first_s`` again."""
        self.failures = 0
