"""One model's inference loop: batches from the batcher run on the device thread, answers back.

The loop never dies: every batch runs inside a try; when a batch fails, its frames are retried
one by one so that one bad frame fails only itself, and every waiting session gets an answer.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor

from tdmi.service.inference.batcher import Batcher
from tdmi.service.inference.runner import ModelRunner
from tdmi.service.inference.work import FrameWork

__all__ = ["InferenceEngine"]

log = logging.getLogger("tdmi.inference")


class InferenceEngine:
    def __init__(self, runner: ModelRunner, batcher: Batcher, executor: Executor, observer=None):
        self.runner = runner
        self.batcher = batcher
        self.executor = executor
        self.observer = observer  # metrics hooks: observe_batch(size, waits)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="inference-engine")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def submit(self, work: FrameWork) -> bool:
        """Queue a frame; False when a live frame finds the queue full."""
        return await self.batcher.put(work)

    async def cancel_stream(self, stream_id: str, reason: str) -> int:
        """Answer the stream's queued frames with ``reason`` (a closed stream); how many there were."""
        return await self.batcher.cancel_stream(stream_id, reason)

    def queued(self) -> int:
        """Frames waiting for a batch."""
        return len(self.batcher)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self.batcher.next_batch()
            if self.observer is not None:
                self.observer.observe_batch(batch)
            try:
                outcomes = await loop.run_in_executor(self.executor, self.runner.run, batch)
            except Exception:
                log.exception("batch of %d frames failed; retrying them one by one", len(batch))
                await self._run_alone(batch)
                continue
            for work, outcome in zip(batch, outcomes, strict=True):
                work.resolve(outcome)

    async def _run_alone(self, batch: list[FrameWork]) -> None:
        loop = asyncio.get_running_loop()
        for work in batch:
            try:
                (outcome,) = await loop.run_in_executor(self.executor, self.runner.run, [work])
            except Exception as exc:
                log.exception("frame %d of stream %s failed", work.frame_index, work.stream_id)
                work.resolve(exc)
            else:
                work.resolve(outcome)
