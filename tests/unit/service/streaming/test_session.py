"""StreamSession with test queues: readiness, clips at the ends, order of results, drops, the box
rule of jobs (independent of timing) and boxes clipped to the frame."""

from __future__ import annotations

import asyncio
import gc
import itertools
import random
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tdmi.model.data.clips import clip_indices
from tdmi.model.tracking import Followed, PoseTracker
from tdmi.service.detection import Detections
from tdmi.service.inference.work import FrameWork, PoseArrays
from tdmi.service.streaming.boxes import SessionBoxes
from tdmi.service.streaming.session import SessionOptions, StreamFrame, StreamSession
from tests.helpers.box_providers import FixedBoxes

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


def OneBox() -> FixedBoxes:
    return FixedBoxes(np.array([[10.0, 10.0, 50.0, 90.0, 0.9]], dtype=np.float32))


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


class DelayedQueue:
    """Answers each frame after a random delay, so frames come back in a timing-dependent order.

    Person i of frame t gets keypoints around (10 + 20 i, 40) carrying t in their x offset, all
    confident, so boxes can be propagated from them and the frame they came from can be read.
    """

    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    async def submit(self, work: FrameWork) -> bool:
        people = np.arange(work.size, dtype=np.float32)[:, None]
        x = 10 + 20 * people + work.frame_index / 100 + np.linspace(0, 8, J)[None, :]
        y = np.broadcast_to(np.linspace(20, 60, J, dtype=np.float32), x.shape)
        keypoints = np.stack([x, y, np.full_like(x, 0.9)], axis=2).astype(np.float32)
        delay = self.rng.random() * 0.02
        asyncio.get_running_loop().call_later(delay, work.resolve, PoseArrays(keypoints))
        return True


class FollowingTracker(PoseTracker):
    """Records which frame's keypoints each step follows (read back from their x offset)."""

    def __init__(self) -> None:
        super().__init__(id_source=itertools.count(1).__next__)
        self.followed: list[int | None] = []
        self._observed: set[int] = set()

    def observe_keypoints(self, track_ids: np.ndarray, keypoints: np.ndarray) -> None:
        self._observed |= {round((p[0, 0] - 10) % 20 * 100) for p in keypoints}
        super().observe_keypoints(track_ids, keypoints)

    def step(self, *, follow_keypoints: bool = True) -> Followed:
        assert len(self._observed) <= 1, self._observed
        self.followed.append(self._observed.pop() if self._observed else None)
        return super().step(follow_keypoints=follow_keypoints)


class FollowingBoxes:
    """Two people when no track is followed, else the followed boxes."""

    async def boxes_for(self, frame: StreamFrame, tracker: PoseTracker) -> tuple[np.ndarray, np.ndarray]:
        followed = tracker.step()
        if len(followed.track_ids):
            return followed.boxes, followed.track_ids
        boxes = np.array([[10, 20, 18, 60, 0.9], [30, 20, 38, 60, 0.8]], dtype=np.float32)
        return boxes, tracker.match(boxes)


async def _job(lag: int, seed: int, frames: int = 12) -> tuple[list[int | None], list]:
    """A job session whose frames come back in an order set by ``seed``."""
    tracker = FollowingTracker()
    options = SessionOptions(radius=2, lookahead=2, live=False, box_lag=lag)
    session = StreamSession("job", DelayedQueue(seed), options, FollowingBoxes(), tracker)

    async def feed() -> None:
        for i in range(frames):
            await session.push(_frame(i))
        await session.end()

    feeding = asyncio.create_task(feed())
    outcomes = [o.poses async for o in session.outcomes()]
    await feeding
    return tracker.followed, outcomes


@pytest.mark.parametrize("lag", [1, 3])
def test_a_job_frame_follows_the_keypoints_of_the_frame_lag_before_whatever_the_timing(lag: int) -> None:
    runs = [asyncio.run(_job(lag, seed)) for seed in range(3)]
    followed, outcomes = runs[0]
    assert followed == [None] * lag + list(range(12 - lag))
    assert all(run == runs[0] for run in runs[1:])  # boxes, ids and keypoints: the same every time
    assert {p.track_id for poses in outcomes for p in poses.persons} == {1, 2}


def test_a_box_lag_beyond_the_frames_in_flight_is_refused() -> None:
    with pytest.raises(ValueError, match="box_lag"):
        SessionOptions(radius=2, lookahead=2, live=False, box_lag=9)
    with pytest.raises(ValueError, match="box_lag"):
        SessionOptions(radius=2, lookahead=2, live=False, box_lag=0)


def test_a_stream_that_shrinks_its_frames_gets_boxes_inside_each_frame() -> None:
    """Through the session: boxes carried over from a 160x120 frame, answered for a 80x60 one."""

    class TwoPeople:
        def detect(self, image: np.ndarray) -> Detections:
            return Detections(np.array([[10, 10, 50, 90], [60, 10, 150, 110]]), np.array([0.9, 0.8]))

    async def scenario() -> list:
        boxes = SessionBoxes("auto", TwoPeople(), 5, ThreadPoolExecutor(1))
        queue = RecordingQueue()
        options = SessionOptions(radius=1, lookahead=0, live=True)
        session = StreamSession("s", queue, options, boxes, PoseTracker())
        for i, (h, w) in enumerate(sizes):
            await session.push(StreamFrame(i, np.zeros((h, w, 3), np.uint8)))
        await session.end()
        queue.answer_all()
        return [o async for o in session.outcomes()]

    sizes = [(120, 160), (120, 160), (60, 80), (60, 80)]
    outcomes = asyncio.run(scenario())
    assert [len(o.poses.persons) for o in outcomes] == [2, 2, 2, 2]
    for outcome, (height, width) in zip(outcomes, sizes, strict=True):
        for person in outcome.poses.persons:
            x1, y1, x2, y2 = person.box
            assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height, (outcome.frame.frame_id, person.box)
    assert outcomes[2].poses.persons[1].box == (60.0, 10.0, 80.0, 60.0)


def test_a_closed_session_lets_go_of_its_images_while_it_is_still_referenced() -> None:
    """A live stream's objects end up in reference cycles that only a full garbage collection
    frees; the frames' images must go when the stream closes, not then."""

    async def run() -> tuple[StreamSession, list[weakref.ref]]:
        queue = RecordingQueue()
        session = StreamSession(
            "s", queue, SessionOptions(radius=2, lookahead=2, live=True), OneBox(), PoseTracker()
        )
        images = []
        for i in range(6):
            frame = _frame(i)
            images.append(weakref.ref(frame.image))
            await session.push(frame)
        queue.answer_all()
        queue.works.clear()  # the batcher lets go of answered work
        outcomes = session.outcomes()
        await anext(outcomes)  # a client that read one result and left
        await outcomes.aclose()
        session.close()
        return session, images

    gc.disable()  # no collection may free them behind the test's back
    try:
        session, images = asyncio.run(run())
        alive = [ref for ref in images if ref() is not None]
        assert session is not None and alive == []
    finally:
        gc.enable()


def test_a_live_session_holds_its_window_of_images_whatever_is_skipped_or_unread() -> None:
    """Frames skipped (a client behind, the rate limit) and answers nobody reads keep no image
    beyond the clip window: the buffer and the queued outcomes stayed bounded by nothing else."""

    async def run() -> tuple[StreamSession, list[weakref.ref], int]:
        queue = RecordingQueue()
        options = SessionOptions(radius=2, lookahead=2, live=True)
        session = StreamSession("s", queue, options, OneBox(), PoseTracker())
        images = []
        for i in range(40):
            frame = _frame(i)
            if i >= 5:  # a client behind: the rest is answered with drop notices
                frame.skip_reason = "client_behind: results are not being read or acknowledged"
            images.append(weakref.ref(frame.image))
            await session.push(frame)
        queue.answer_all()
        queue.works.clear()  # the batcher lets go of answered work; no outcome was read
        return session, images, options.radius + options.lookahead + 1

    gc.disable()
    try:
        session, images, window = asyncio.run(run())
        alive = [i for i, ref in enumerate(images) if ref() is not None]
        assert session is not None and alive == list(range(40 - window + 1, 40)), alive
    finally:
        gc.enable()
