"""The engine's three stages with a plain runner and no model: every frame answered in its own
batch order, stages on their own threads, and a failure in any stage failing only its bad frame."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tdmi.service.inference.batcher import Batcher
from tdmi.service.inference.engine import InferenceEngine
from tdmi.service.inference.work import FrameWork, PoseArrays


class Runner:
    """Keypoints that say which frame they belong to; ``bad`` frames fail in stage ``fails_in``."""

    def __init__(self, bad: set[int] = frozenset(), fails_in: str = "forward", wrong_count: bool = False):
        self.bad = bad
        self.fails_in = fails_in
        self.wrong_count = wrong_count
        self.threads: dict[str, set[str]] = {"prepare": set(), "forward": set(), "finish": set()}
        self.order: list[tuple[str, tuple[int, ...]]] = []
        self.lock = threading.Lock()

    def _step(self, stage: str, batch: Sequence[FrameWork]) -> None:
        with self.lock:
            self.threads[stage].add(threading.current_thread().name)
            self.order.append((stage, tuple(w.frame_index for w in batch)))
        if stage == self.fails_in and any(w.frame_index in self.bad for w in batch):
            raise RuntimeError(f"bad frame in {stage}")

    def prepare(self, batch: Sequence[FrameWork]) -> list[FrameWork]:
        self._step("prepare", batch)
        return list(batch)

    def forward(self, prepared: list[FrameWork]) -> list[FrameWork]:
        self._step("forward", prepared)
        return prepared

    def finish(self, prepared: list[FrameWork]) -> list[PoseArrays]:
        self._step("finish", prepared)
        outcomes = [PoseArrays(np.full((w.size, 17, 3), w.frame_index, np.float32)) for w in prepared]
        return outcomes[1:] if self.wrong_count and len(outcomes) > 1 else outcomes

    def run(self, batch: Sequence[FrameWork]) -> list[PoseArrays]:
        return self.finish(self.forward(self.prepare(batch)))


def _work(index: int) -> FrameWork:
    return FrameWork(
        stream_id=f"s{index % 3}",
        frame_index=index,
        images={},
        clip=[0],
        boxes=np.zeros((1 + index % 2, 4), dtype=np.float32),
    )


async def _serve(runner: Runner, frames: int) -> list[PoseArrays | BaseException]:
    device = ThreadPoolExecutor(max_workers=1, thread_name_prefix="device")
    engine = InferenceEngine(runner, Batcher(max_batch=4, max_delay_ms=1, capacity=64), device)
    engine.start()
    try:
        works = [_work(i) for i in range(frames)]
        for work in works:
            assert await engine.submit(work)
        return await asyncio.wait_for(
            asyncio.gather(*(w.future for w in works), return_exceptions=True), timeout=30
        )
    finally:
        await engine.stop()
        device.shutdown()


def test_every_frame_gets_its_own_answer_through_three_threads() -> None:
    runner = Runner()
    outcomes = asyncio.run(_serve(runner, 20))
    for index, outcome in enumerate(outcomes):
        assert isinstance(outcome, PoseArrays)
        assert outcome.keypoints.shape == (1 + index % 2, 17, 3)
        assert np.all(outcome.keypoints == index)
    assert runner.threads["forward"] == {"device_0"}
    assert all(name.startswith("tdmi-prepare") for name in runner.threads["prepare"])
    assert all(name.startswith("tdmi-finish") for name in runner.threads["finish"])
    # each stage sees the batches in the order the batcher formed them
    by_stage = {stage: [b for s, b in runner.order if s == stage] for stage in runner.threads}
    assert by_stage["prepare"] == by_stage["forward"] == by_stage["finish"]


@pytest.mark.parametrize("stage", ["prepare", "forward", "finish"])
def test_a_bad_frame_fails_only_itself_whatever_the_stage(stage: str) -> None:
    outcomes = asyncio.run(_serve(Runner(bad={5, 11}, fails_in=stage), 16))
    for index, outcome in enumerate(outcomes):
        if index in (5, 11):
            assert isinstance(outcome, RuntimeError) and stage in str(outcome)
        else:
            assert isinstance(outcome, PoseArrays) and np.all(outcome.keypoints == index)


def test_a_wrong_number_of_outcomes_is_caught_and_the_frames_answered() -> None:
    outcomes = asyncio.run(_serve(Runner(wrong_count=True), 12))
    assert all(isinstance(o, PoseArrays) for o in outcomes)  # one by one, each gets exactly one
    assert [int(o.keypoints[0, 0, 0]) for o in outcomes] == list(range(12))  # type: ignore[union-attr]
