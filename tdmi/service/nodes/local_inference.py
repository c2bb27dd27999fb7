"""Models on this process's device, and the sessions and live feeds that use them.

The embedded node and a cluster's worker node both run it. It is a part of those nodes rather
than of ``tdmi.service.inference``: it puts the runtime together with ``tdmi.service.streaming``, which
itself builds on the runtime.
"""

from __future__ import annotations

from tdmi.service.config import Settings
from tdmi.service.inference.runtime import InferenceRuntime
from tdmi.service.metrics import ServiceMetrics
from tdmi.service.streaming.factory import SessionFactory
from tdmi.service.streaming.feed import ErrorSink, LocalFeed

__all__ = ["LocalInference"]


class LocalInference:
    """The models loaded here, and the sessions and live feeds that run on them."""

    def __init__(self, settings: Settings, metrics: ServiceMetrics):
        self.settings, self.metrics = settings, metrics
        self.runtime = InferenceRuntime(settings, metrics)
        self._sessions: SessionFactory | None = None

    async def start(self) -> None:
        await self.runtime.start()
        self._sessions = SessionFactory(self.settings, self.metrics)

    @property
    def sessions(self) -> SessionFactory:
        if self._sessions is None:
            raise RuntimeError("the models are not loaded yet")
        return self._sessions

    def open_feed(self, stream_id: str, on_error: ErrorSink) -> LocalFeed:
        return LocalFeed(
            stream_id,
            on_error,
            runtime=self.runtime,
            sessions=self.sessions,
            settings=self.settings,
            metrics=self.metrics,
        )

    async def stop(self) -> None:
        if self._sessions is not None:
            self._sessions.close()
        await self.runtime.stop()
