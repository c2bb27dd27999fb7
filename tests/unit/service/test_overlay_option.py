"""The overlay's score threshold is an option: a setting for server overlays, a client flag."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from tdmi.client.cli import build_parser
from tdmi.model.joints import COCO_17
from tdmi.protocol.overlay import DEFAULT_SCORE_THRESHOLD, draw_poses
from tdmi.service.config import Settings
from tdmi.service.jobs.processor import _render
from tdmi.service.streaming.session import StreamFrame


def _person() -> dict:
    """Shoulders confident, every other joint at score 0.1."""
    keypoints = [[20.0 + 10 * j, 50.0, 0.1] for j in range(17)]
    keypoints[5], keypoints[6] = [40.0, 60.0, 0.9], [100.0, 60.0, 0.9]
    return {"track_id": 1, "box": None, "keypoints": keypoints}


class _Frames:
    """What OverlayWriter is given, kept instead of encoded."""

    def __init__(self) -> None:
        self.images: list[np.ndarray] = []

    def write(self, image: np.ndarray, ticks: int) -> None:
        self.images.append(image)


def test_the_server_setting_reaches_the_overlay_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    blank = np.zeros((120, 240, 3), np.uint8)
    assert Settings().overlay_score_threshold == DEFAULT_SCORE_THRESHOLD == 0.3
    monkeypatch.setenv("TDMI_OVERLAY_SCORE_THRESHOLD", "0.05")
    frames = _Frames()
    poses = SimpleNamespace(persons=[_person()], index=0)
    _render(frames, blank, poses, COCO_17.skeleton, StreamFrame(0, blank), Settings())  # type: ignore[arg-type]
    expected = draw_poses(blank, [_person()], COCO_17.skeleton, score_threshold=0.05)
    assert np.array_equal(frames.images[0], expected)
    assert not np.array_equal(expected, draw_poses(blank, [_person()], COCO_17.skeleton))  # 0.1 joints drawn
    monkeypatch.setenv("TDMI_OVERLAY_SCORE_THRESHOLD", "1.5")
    with pytest.raises(ValueError, match="overlay_score_threshold"):
        Settings()


def test_the_client_flag_for_render_and_show() -> None:
    assert build_parser().parse_args(["stream", "0"]).score_threshold == DEFAULT_SCORE_THRESHOLD
    assert build_parser().parse_args(["stream", "0", "--score-threshold", "0.1"]).score_threshold == 0.1
