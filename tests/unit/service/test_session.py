"""StreamSession with a recording queue: readiness, clips at the ends, order of results, drops."""

from __future__ import annotations

import asyncio
import random

import numpy as np
import pytest

from tdmi.model.data.clips import clip_indices
from tdmi.model.tracking import PoseTracker
from tdmi.service.inference.work import FrameWork, PoseArrays
from tdmi.service.streaming.session import SessionOptions, StreamFrame, StreamSession

J = 17


class RecordingQueue:
    """Accepts every frame and answers them later, in a shuffled order."""

    def __init__(self, accept: bool = True):
        self.works: list[FrameWork] = []
        self.accept = accept

    async def submit(self, work: FrameWork) -> bool:
        self.works.append(work)
        return self.accept

    def answer_all(self, seed: int = 0) -> None:
        for work in random.Random(seed).sample(self.works, len(self.works)):
            marker = np.full((work.size, J, 3), float(work.frame_index), dtype=np.float32)
            work.resolve(PoseArrays(marker))


class OneBox:
    async def boxes_for(self, frame: StreamFrame, previous: dict[int, np.ndarray]) -> np.ndarray:
        if frame.client_boxes is not None:
            return frame.client_boxes
        return np.array([[10.0, 10.0, 50.0, 90.0, 0.9]], dtype=np.float32)


def _frame(i: int, boxes: np.ndarray | None = None) -> StreamFrame:
    return StreamFrame(
        frame_id=100 + i, image=np.full((8, 8, 3), i, dtype=np.uint8), pts=i / 25, client_boxes=boxes
    )


async def _run(options: SessionOptions, frames: int, queue: RecordingQueue, check=None) -> list:
    session = StreamSession("s", queue, options, OneBox(), PoseTracker())
    submitted_after_push = []
    for i in range(frames):
        await session.push(_frame(i))
        submitted_after_push.append(len(queue.works))
    await session.end()
    queue.answer_all()
    outcomes = [o async for o in session.outcomes()]
    return [submitted_after_push, outcomes]


def test_frames_wait_for_their_lookahead_and_clips_at_the_ends_repeat_the_key_frame() -> None:
    queue = RecordingQueue()
    submitted, outcomes = asyncio.run(_run(SessionOptions(radius=2, lookahead=2, live=False), 6, queue))
    assert submitted == [0, 0, 1, 2, 3, 4]  # frame t goes once frame t+2 is in
    for work in queue.works:
        expected = clip_indices(work.frame_index, 6, 2)
        assert work.clip == expected
        # the buffer gave each clip position the right frame (its pixels carry its index)
        assert [int(work.images[k][0, 0, 0]) for k in work.clip] == expected
    assert [o.frame.frame_id for o in outcomes] == [100 + i for i in range(6)]  # in order despite shuffling
    assert [o.poses.persons[0].keypoints[0][0] for o in outcomes] == [float(i) for i in range(6)]
    assert len({o.poses.persons[0].track_id for o in outcomes}) == 1  # one person, one track


def test_live_lookahead_zero_answers_each_frame_at_once() -> None:
    queue = RecordingQueue()
    submitted, _ = asyncio.run(_run(SessionOptions(radius=2, lookahead=0, live=True), 4, queue))
    assert submitted == [1, 2, 3, 4]
    assert [w.clip for w in queue.works][2] == [0, 1, 2, 2, 2]  # no future frames: the key frame stands in


def test_refused_and_skipped_frames_become_drop_notices_in_order() -> None:
    async def scenario() -> list:
        queue = RecordingQueue(accept=False)
        session = StreamSession(
            "s", queue, SessionOptions(radius=1, lookahead=0, live=True), OneBox(), PoseTracker()
        )
        await session.push(_frame(0))
        skipped = _frame(1)
        skipped.skip_reason = "rate: too many frames"
        await session.push(skipped)
        await session.end()
        return [o async for o in session.outcomes()]

    outcomes = asyncio.run(scenario())
    assert [o.dropped for o in outcomes] == ["queue full: the server is overloaded", "rate: too many frames"]


def test_frames_without_persons_need_no_inference() -> None:
    async def scenario() -> tuple[RecordingQueue, list]:
        queue = RecordingQueue()
        session = StreamSession(
            "s", queue, SessionOptions(radius=2, lookahead=2, live=False), OneBox(), PoseTracker()
        )
        await session.push(_frame(0, boxes=np.zeros((0, 5), np.float32)))
        await session.end()
        return queue, [o async for o in session.outcomes()]

    queue, outcomes = asyncio.run(scenario())
    assert queue.works == []
    assert outcomes[0].poses.persons == []


def test_lookahead_beyond_the_model_is_refused() -> None:
    with pytest.raises(ValueError, match="lookahead"):
        StreamSession(
            "s", RecordingQueue(), SessionOptions(radius=2, lookahead=3, live=True), OneBox(), PoseTracker()
        )
