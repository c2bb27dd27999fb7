"""Smoothing in sessions: a live stream's config chooses it over the server's setting, jobs get the
setting, and only the answers are smoothed (the tracker and the boxes follow the raw keypoints)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tdmi.model.presets import get_preset
from tdmi.model.smoothing import OneEuroParams, PoseSmoother
from tdmi.model.tracking import PoseTracker
from tdmi.protocol.stream import ConfigMessage
from tdmi.service.config import Settings
from tdmi.service.inference.work import PoseArrays
from tdmi.service.metrics import ServiceMetrics
from tdmi.service.streaming.factory import SessionFactory
from tdmi.service.streaming.feed import LocalFeed, errors_ignored
from tdmi.service.streaming.session import SessionOptions, StreamFrame, StreamSession
from tests.helpers.box_providers import FixedBoxes

FPS = 25.0


def _model() -> SimpleNamespace:
    return SimpleNamespace(name="tdmi-tiny", preset=get_preset("tdmi-tiny"), engine=None)


def _live(settings: Settings, config: ConfigMessage) -> StreamSession:
    model = _model()
    runtime = SimpleNamespace(get=lambda name: model)
    feed = LocalFeed(
        "s",
        errors_ignored,
        runtime=runtime,  # type: ignore[arg-type]
        sessions=SessionFactory(settings, ServiceMetrics()),
        settings=settings,
        metrics=ServiceMetrics(),
    )
    asyncio.run(feed.open(config))
    assert feed.session is not None
    return feed.session


def test_smoothing_is_off_by_default(tmp_path: Path) -> None:
    assert _live(Settings(detector="none", data_dir=tmp_path), ConfigMessage()).smoother is None


def test_the_server_setting_applies_unless_the_stream_says_otherwise(tmp_path: Path) -> None:
    settings = Settings(
        detector="none", data_dir=tmp_path, smoothing="one_euro", smoothing_min_cutoff=3.0, smoothing_beta=0.2
    )
    session = _live(settings, ConfigMessage())
    assert session.smoother is not None
    assert (session.smoother.params.min_cutoff, session.smoother.params.beta) == (3.0, 0.2)
    assert _live(settings, ConfigMessage(smoothing="none")).smoother is None
    job = SessionFactory(settings, ServiceMetrics()).new("job", _model(), live=False)  # type: ignore[arg-type]
    assert job.smoother is not None and job.smoother.params.min_cutoff == 3.0


def test_a_stream_can_turn_smoothing_on_with_its_own_parameters(tmp_path: Path) -> None:
    settings = Settings(detector="none", data_dir=tmp_path, smoothing_beta=0.2)
    session = _live(settings, ConfigMessage(smoothing="one_euro", smoothing_min_cutoff=5.0))
    assert session.smoother is not None
    assert (session.smoother.params.min_cutoff, session.smoother.params.beta) == (5.0, 0.2)


class _Queue:
    """Answers every frame at once with x = 30 +- 3 (a person standing in the box, and jitter)."""

    async def submit(self, work) -> bool:
        x = 30.0 + (3.0 if work.frame_index % 2 else -3.0)
        work.resolve(PoseArrays(np.full((work.size, 17, 3), x, dtype=np.float32)))
        return True


class _RecordingTracker(PoseTracker):
    def __init__(self) -> None:
        super().__init__()
        self.observed: list[float] = []

    def observe_keypoints(self, track_ids: np.ndarray, keypoints: np.ndarray) -> None:
        self.observed.append(float(keypoints[0, 0, 0]))
        super().observe_keypoints(track_ids, keypoints)


@pytest.mark.parametrize("live", [False, True])
def test_a_session_smooths_what_it_answers_while_its_tracker_sees_the_raw_keypoints(live: bool) -> None:
    async def scenario() -> tuple[list[float], list[float]]:
        queue, tracker = _Queue(), _RecordingTracker()
        options = SessionOptions(radius=1, lookahead=0, live=live, box_lag=None if live else 1)
        smoother = PoseSmoother(OneEuroParams(min_cutoff=1.0, beta=0.0))
        session = StreamSession(
            "s",
            queue,
            options,
            FixedBoxes(np.array([[10.0, 10.0, 50.0, 90.0, 0.9]], dtype=np.float32)),
            tracker,
            smoother=smoother,
        )
        for i in range(8):
            await session.push(StreamFrame(frame_id=i, image=np.zeros((8, 8, 3), np.uint8), pts=i / FPS))
        await session.end()
        answered = [o.poses.persons[0].keypoints[0][0] async for o in session.outcomes()]
        return answered, tracker.observed

    answered, observed = asyncio.run(scenario())
    raw = [30.0 + (3.0 if i % 2 else -3.0) for i in range(8)]
    assert observed == raw[: len(observed)] and len(observed) >= 7  # the raw values, in frame order
    assert answered[0] == raw[0] and all(abs(a - r) > 0.5 for a, r in zip(answered[1:], raw[1:]))
