"""One model's inference loop: three stages in a row, so that the model never waits for the others.

    batcher ─▶ prepare (upload, crop, normalise) ─▶ model (device thread) ─▶ finish (decode, map back)
               its own thread                  queue of 1             queue of 1   its own thread

While the model runs batch N, batch N+1 is prepared and batch N-1 is decoded. The hand-off queues
hold one batch each, and the next batch is only taken from the batcher once the model has taken
the one before, so at most one prepared batch waits for the model, memory stays bounded, and the
batcher keeps collecting (batches do not leave early and small). The
device thread is shared by every model of the process (the accelerator runs one batch at a
time); each engine has its own prepare and finish threads.

The loop never dies: every stage handles each batch inside a try; when a batch fails in any
stage, its frames run again one by one through all three stages, so that one bad frame fails
only itself, and every waiting session gets an answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any, Protocol, TypeVar

from tdmi.service.inference.batcher import Batcher
from tdmi.service.inference.threads import named_threads
from tdmi.service.inference.work import FrameWork, PoseArrays

__all__ = ["InferenceEngine", "StagedRunner"]

log = logging.getLogger("tdmi.inference")

Prepared = TypeVar("Prepared")


class StagedRunner(Protocol[Prepared]):
    """A model runner cut into the three stages of the engine; ``run`` is all three in a row."""

    def prepare(self, batch: Sequence[FrameWork]) -> Prepared: ...

    def forward(self, prepared: Prepared) -> Prepared: ...

    def finish(self, prepared: Prepared) -> list[PoseArrays]: ...

    def run(self, batch: Sequence[FrameWork]) -> list[PoseArrays]: ...


class InferenceEngine:
    def __init__(self, runner: StagedRunner[Any], batcher: Batcher, executor: Executor, observer=None):
        self.runner = runner
        self.batcher = batcher
        self.executor = executor  # the device thread
        self.observer = observer  # metrics hooks: observe_batch(batch)
        self._prepare_thread = named_threads("tdmi-prepare")
        self._finish_thread = named_threads("tdmi-finish")
        self._tasks: list[asyncio.Task[None]] = []
        self.batches = 0  # taken from the batcher so far: the node's activity

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        to_model: asyncio.Queue[tuple[list[FrameWork], Any]] = asyncio.Queue(maxsize=1)
        to_finish: asyncio.Queue[tuple[list[FrameWork], Any]] = asyncio.Queue(maxsize=1)
        self._tasks = [
            loop.create_task(self._prepare_stage(to_model), name="inference-prepare"),
            loop.create_task(self._model_stage(to_model, to_finish), name="inference-model"),
            loop.create_task(self._finish_stage(to_finish), name="inference-finish"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self._prepare_thread.shutdown(wait=False, cancel_futures=True)
        self._finish_thread.shutdown(wait=False, cancel_futures=True)

    async def submit(self, work: FrameWork) -> bool:
        """Queue a frame; False when a live frame finds the queue full."""
        return await self.batcher.put(work)

    async def cancel_stream(self, stream_id: str, reason: str) -> int:
        """Answer the stream's queued frames with ``reason`` (a closed stream); how many there were."""
        return await self.batcher.cancel_stream(stream_id, reason)

    def queued(self) -> int:
        """Frames waiting for a batch."""
        return len(self.batcher)

    async def _prepare_stage(self, to_model: asyncio.Queue[tuple[list[FrameWork], Any]]) -> None:
        while True:
            # the next batch is formed only once the model has taken the one before: it then
            # collects every frame that arrived meanwhile, instead of going early and small
            await to_model.join()
            batch = await self.batcher.next_batch()
            self.batches += 1
            if self.observer is not None:
                self.observer.observe_batch(batch)
            prepared = await self._attempt(self._prepare_thread, self.runner.prepare, batch, "prepare")
            if prepared is not _FAILED:
                await to_model.put((batch, prepared))

    async def _model_stage(
        self,
        to_model: asyncio.Queue[tuple[list[FrameWork], Any]],
        to_finish: asyncio.Queue[tuple[list[FrameWork], Any]],
    ) -> None:
        while True:
            batch, prepared = await to_model.get()
            to_model.task_done()  # taken: the prepare stage may form the next batch
            ran = await self._attempt(self.executor, self.runner.forward, prepared, "model", batch)
            if ran is not _FAILED:
                await to_finish.put((batch, ran))

    async def _finish_stage(self, to_finish: asyncio.Queue[tuple[list[FrameWork], Any]]) -> None:
        while True:
            batch, ran = await to_finish.get()
            outcomes = await self._attempt(self._finish_thread, self.runner.finish, ran, "finish", batch)
            if outcomes is _FAILED:
                continue
            if len(outcomes) != len(batch):  # a runner bug must not leave sessions waiting
                log.error("%d outcomes for %d frames; running them one by one", len(outcomes), len(batch))
                await self._run_alone(batch)
                continue
            for work, outcome in zip(batch, outcomes, strict=True):
                work.resolve(outcome)

    async def _attempt(
        self,
        executor: Executor,
        step: Callable[[Any], Any],
        argument: Any,
        stage: str,
        batch: list[FrameWork] | None = None,
    ) -> Any:
        """``step(argument)`` on ``executor``; on failure the batch's frames run one by one instead
        and ``_FAILED`` is returned, so the stage goes on with its next batch."""
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, step, argument)
        except Exception:
            frames = argument if batch is None else batch
            log.exception("%s of a batch of %d frames failed; running them one by one", stage, len(frames))
            await self._run_alone(frames)
            return _FAILED

    async def _run_alone(self, batch: Sequence[FrameWork]) -> None:
        loop = asyncio.get_running_loop()
        for work in batch:
            try:
                (outcome,) = await loop.run_in_executor(self.executor, self.runner.run, [work])
            except Exception as exc:
                log.exception("frame %d of stream %s failed", work.frame_index, work.stream_id)
                work.resolve(exc)
            else:
                work.resolve(outcome)


_FAILED: Any = object()  # a stage's answer when its batch failed (and was run frame by frame)
