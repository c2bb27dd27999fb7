"""Feature reuse: TDMI in two halves equals forward; sessions with anchors run the backbone once
per frame and track through the real batcher, engine and runner; drift re-anchors; the cache
stays bounded and is emptied when a stream ends; results stay in order and per stream."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from tdmi.model.presets import TINY, build_model, get_preset
from tdmi.model.tdmi import TDMI, TDMIConfig
from tdmi.model.tracking import PoseTracker
from tdmi.service.inference.backends import make_backend
from tdmi.service.inference.batcher import Batcher
from tdmi.service.inference.engine import InferenceEngine
from tdmi.service.inference.runner import ModelRunner
from tdmi.service.streaming.anchors import TrackAnchors
from tdmi.service.streaming.session import FrameOutcome, SessionOptions, StreamFrame, StreamSession
from tests.helpers.box_providers import FixedBoxes
from tests.helpers.weights import randomize

PRESET = get_preset("tdmi-tiny")
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def network() -> TDMI:
    net = randomize(build_model("tdmi-tiny"))
    assert isinstance(net, TDMI)
    return net


@pytest.mark.slow
@pytest.mark.parametrize("spatiotemporal", [False, True])
def test_the_two_halves_equal_forward(spatiotemporal: bool) -> None:
    cfg = TDMIConfig(TINY, motion_blocks=(1, 1, 1, 1), fusion_blocks=1, spatiotemporal=spatiotemporal)
    net = randomize(TDMI(cfg)).eval()
    clips = torch.randn(2, cfg.num_frames, 3, 64, 48)
    with torch.inference_mode():
        expected = net(clips)
        together = net.forward_frame_features(clips.flatten(0, 1))
        stacked = [f.unflatten(0, clips.shape[:2]) for f in together]
        assert torch.equal(net.forward_from_frame_features(stacked), expected)
        # what the cache does: each frame through the backbone on its own, stacked afterwards
        alone = [net.forward_frame_features(frame[None]) for frame in clips.flatten(0, 1)]
        restacked = [torch.cat([a[s] for a in alone]).unflatten(0, clips.shape[:2]) for s in range(4)]
        torch.testing.assert_close(net.forward_from_frame_features(restacked), expected, atol=1e-4, rtol=1e-4)


def test_anchors_stay_while_the_box_stays_and_move_when_it_drifts() -> None:
    anchors = TrackAnchors(min_iou=0.8)
    ids = np.array([7, 9])
    first = anchors.assign(ids, np.array([[10.0, 10, 50, 90], [100, 10, 140, 90]]))
    # a shift of 2 px keeps IoU ~0.9; track 9 jumps 20 px (IoU ~0.3)
    second = anchors.assign(ids, np.array([[12.0, 10, 52, 90], [120, 10, 160, 90]]))
    assert second[0] is first[0]
    assert second[1].anchor_id != first[1].anchor_id
    np.testing.assert_array_equal(second[1].box, [120, 10, 160, 90])
    assert anchors.reanchored == 1
    # track 7 vanishes for a frame: it comes back with a fresh anchor
    anchors.assign(np.array([9]), np.array([[120.0, 10, 160, 90]]))
    third = anchors.assign(ids, np.array([[12.0, 10, 52, 90], [120, 10, 160, 90]]))
    assert third[0].anchor_id not in {first[0].anchor_id, second[1].anchor_id}
    assert third[1] is second[1]
    with pytest.raises(ValueError, match="min_iou"):
        TrackAnchors(min_iou=0.0)


def _video(frames: int, boxes_at, seed: int = 0) -> list[StreamFrame]:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    return [
        StreamFrame(
            frame_id=i,
            image=np.roll(base, i, axis=1),  # the scene moves: neighbouring frames differ
            client_boxes=np.asarray(boxes_at(i), dtype=np.float32),
        )
        for i in range(frames)
    ]


def _static(i: int) -> list[list[float]]:
    return [[30.0, 20.0, 80.0, 110.0, 1.0], [90.0, 15.0, 140.0, 100.0, 1.0]]


def _walking(i: int) -> list[list[float]]:
    return [[30.0 + 4 * i, 20.0, 80.0 + 4 * i, 110.0, 1.0]]  # 4 px a frame: re-anchored every few


class Pipeline:
    """The service's inference path in-process: batcher, engine, runner on a device thread."""

    def __init__(self, network: TDMI, feature_reuse: bool, max_batch: int = 8):
        backend = make_backend("torch", network, PRESET, CPU, "fp32", Path("unused"), "test")
        self.runner = ModelRunner(PRESET, backend, CPU, max_batch, feature_reuse=feature_reuse)
        self.feature_reuse = feature_reuse
        self.max_batch = max_batch

    async def run(
        self, videos: list[list[StreamFrame]], drift_iou: float = 0.8, live: bool = False
    ) -> tuple[list[list[FrameOutcome]], list[StreamSession], list[int]]:
        """Every video as its own concurrent stream; the outcomes of each and the cache sizes seen."""
        executor = ThreadPoolExecutor(max_workers=1)
        engine = InferenceEngine(self.runner, Batcher(self.max_batch, 2.0, 64), executor)
        engine.start()
        options = SessionOptions(
            radius=2, lookahead=2, live=live, feature_reuse=self.feature_reuse, reuse_drift_iou=drift_iou
        )
        sessions = [
            StreamSession(f"s{i}", engine, options, FixedBoxes(), PoseTracker()) for i in range(len(videos))
        ]
        cache_sizes: list[int] = []

        async def feed(session: StreamSession, frames: list[StreamFrame]) -> None:
            for frame in frames:
                await session.push(frame)
            await session.end()

        async def collect(session: StreamSession) -> list[FrameOutcome]:
            out = []
            async for outcome in session.outcomes():
                if session.feature_cache is not None:
                    cache_sizes.append(len(session.feature_cache))
                out.append(outcome)
            return out

        try:
            feeders = [asyncio.create_task(feed(s, v)) for s, v in zip(sessions, videos)]
            outcomes = await asyncio.gather(*(collect(s) for s in sessions))
            await asyncio.gather(*feeders)
        finally:
            await engine.stop()
            executor.shutdown()
        return list(outcomes), sessions, cache_sizes


def _keypoints(outcomes: list[FrameOutcome]) -> np.ndarray:
    assert all(o.poses is not None for o in outcomes), [o.error for o in outcomes]
    return np.array([[p.keypoints for p in o.poses.persons] for o in outcomes if o.poses is not None])


def test_a_static_person_goes_through_the_backbone_once_per_frame(network: TDMI) -> None:
    frames = 9
    exact = Pipeline(network, feature_reuse=False)
    reuse = Pipeline(network, feature_reuse=True)
    (exact_out,), _, _ = asyncio.run(exact.run([_video(frames, _static)]))
    (reuse_out,), (session,), cache_sizes = asyncio.run(reuse.run([_video(frames, _static)]))
    persons = 2
    assert exact.runner.backbone_crops == frames * persons * PRESET.num_frames
    assert reuse.runner.backbone_crops == frames * persons  # every (frame, track) once
    # the anchor is the exact path's box, so the results are the same up to float rounding
    np.testing.assert_allclose(_keypoints(reuse_out), _keypoints(exact_out), atol=1e-2)
    assert session.anchors is not None and session.anchors.reanchored == 0
    # bounded while running (a window's frames per person), empty once the stream is over
    assert max(cache_sizes) <= persons * PRESET.num_frames
    assert session.feature_cache is not None and len(session.feature_cache) == 0


def test_the_network_really_sees_fewer_crops(network: TDMI) -> None:
    """Counted on the backbone's first layer itself (rows, bucket padding included)."""
    rows: list[int] = []
    handle = network.backbone.conv1.register_forward_hook(lambda module, args, out: rows.append(len(args[0])))
    try:
        seen = {}
        for reuse in (False, True):
            pipeline = Pipeline(network, feature_reuse=reuse)
            rows.clear()  # warm-up is not counted
            asyncio.run(pipeline.run([_video(10, _static)]))
            seen[reuse] = sum(rows)
    finally:
        handle.remove()
    assert seen[False] >= 10 * 2 * PRESET.num_frames
    assert seen[True] * 3 <= seen[False]


def test_a_drifting_box_is_re_anchored_and_its_window_recomputed(network: TDMI) -> None:
    frames = 12
    exact = Pipeline(network, feature_reuse=False)
    reuse = Pipeline(network, feature_reuse=True)
    (exact_out,), _, _ = asyncio.run(exact.run([_video(frames, _walking)]))
    (reuse_out,), (session,), _ = asyncio.run(reuse.run([_video(frames, _walking)], drift_iou=0.8))
    assert session.anchors is not None
    reanchored = session.anchors.reanchored
    assert reanchored >= 2  # 4 px a frame on a 50 px box: IoU drops below 0.8 within 3 frames
    # each re-anchor recomputes the new anchor's window (at most 2d+1 frames) instead of one frame
    assert frames < reuse.runner.backbone_crops <= frames + reanchored * (PRESET.num_frames - 1)
    assert reuse.runner.backbone_crops < exact.runner.backbone_crops
    # crops off by less than the drift allows: keypoints move, but stay near the exact ones
    error = np.linalg.norm(_keypoints(reuse_out)[..., :2] - _keypoints(exact_out)[..., :2], axis=-1)
    assert np.median(error) < 8.0  # pixels, on a random-weight network's keypoints


def test_streams_keep_their_order_and_their_own_features(network: TDMI) -> None:
    videos = [_video(8, _static, seed=1), _video(10, _walking, seed=2), _video(7, _static, seed=3)]
    together, sessions, _ = asyncio.run(Pipeline(network, feature_reuse=True).run(videos))
    for video, outcomes, session in zip(videos, together, sessions):
        assert [o.frame.frame_id for o in outcomes] == [f.frame_id for f in video]
        ((alone,), _, _) = asyncio.run(Pipeline(network, feature_reuse=True).run([video]))
        # anchors of different streams share ids (each counts from 0): their caches must not mix
        np.testing.assert_allclose(_keypoints(outcomes), _keypoints(alone), atol=1e-2)
        assert session.feature_cache is not None and len(session.feature_cache) == 0


def test_feature_reuse_refuses_backends_that_hold_the_whole_graph(network: TDMI, tmp_path: Path) -> None:
    backend = make_backend("torchscript", network, PRESET, CPU, "fp32", tmp_path, "test")
    with pytest.raises(ValueError, match="feature_reuse needs backend torch"):
        ModelRunner(PRESET, backend, CPU, 4, feature_reuse=True)
