"""Overlay drawing: what is drawn where, what is left out, colours per track, no surprise mutation."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from tdmi.model.joints import COCO_17
from tdmi.protocol.overlay import draw_poses, track_color

HEIGHT, WIDTH = 200, 240
BOX = [20.0, 30.0, 120.0, 150.0]
VISIBLE = {5: (40, 60), 6: (100, 60), 11: (45, 130), 12: (95, 130)}  # shoulders and hips


def _person(track_id: int | None = 3, box: list[float] | None = BOX) -> dict:
    """Shoulders and hips confident; every other joint low-score, parked at x=220 (outside the box)."""
    keypoints = [[220.0, 10.0 + 10 * j, 0.1] for j in range(17)]
    for joint, (x, y) in VISIBLE.items():
        keypoints[joint] = [float(x), float(y), 0.9]
    return {"track_id": track_id, "box": box, "keypoints": keypoints}


def _blank() -> np.ndarray:
    return np.zeros((HEIGHT, WIDTH, 3), np.uint8)


def test_draws_joints_limbs_box_and_label() -> None:
    canvas = draw_poses(_blank(), [_person()], COCO_17.skeleton)
    color = np.array(track_color(3))
    for x, y in VISIBLE.values():
        np.testing.assert_array_equal(canvas[y, x], color)
    # limbs between confident joints: shoulder line and left side
    assert canvas[60, 70].any() and canvas[95, 42:45].any()
    # box edges
    x1, y1, x2, y2 = (int(v) for v in BOX)
    for x, y in [(x1, 90), (x2, 90), (70, y2), (110, y1)]:
        np.testing.assert_array_equal(canvas[y, x], color)
    # the "id 3" label is a filled tag in the track colour above the box's top-left corner
    tag = canvas[y1 - 8 : y1, x1 : x1 + 10].reshape(-1, 3)
    assert (tag == color).all(axis=1).mean() > 0.5


def test_low_score_joints_and_their_limbs_are_left_out() -> None:
    person = _person()
    person["keypoints"][6] = [math.nan, math.nan, 0.95]  # a confident joint without a position
    canvas = draw_poses(_blank(), [person], COCO_17.skeleton, score_threshold=0.3)
    assert not canvas[:, 130:].any()  # every low-score joint sits at x=220
    assert not canvas[60, 45:95].any()  # no shoulder line towards the missing right shoulder
    assert canvas[60, 40].any()

    lowered = draw_poses(_blank(), [_person(box=None)], COCO_17.skeleton, score_threshold=0.05)
    assert lowered[10:180, 215:226].any()  # the same joints appear once the threshold allows them


def test_colours_are_fixed_per_track_id() -> None:
    first = draw_poses(_blank(), [_person(track_id=7)], COCO_17.skeleton)
    again = draw_poses(_blank(), [_person(track_id=7)], COCO_17.skeleton)
    other = draw_poses(_blank(), [_person(track_id=8)], COCO_17.skeleton)
    x, y = VISIBLE[5]
    np.testing.assert_array_equal(first, again)
    assert tuple(first[y, x]) == track_color(7) != tuple(other[y, x]) == track_color(8)
    assert len({track_color(i) for i in range(20)}) == 20
    assert track_color(None) == track_color(None) and track_color(None) not in {
        track_color(i) for i in range(20)
    }


def test_copies_unless_asked_to_draw_in_place() -> None:
    image = _blank()
    drawn = draw_poses(image, [_person()], COCO_17.skeleton)
    assert drawn.any() and not image.any()

    same = draw_poses(image, [_person()], COCO_17.skeleton, inplace=True)
    assert same is image and image.any()


def test_accepts_objects_as_well_as_dicts_and_partial_persons() -> None:
    as_dict = draw_poses(_blank(), [_person()], COCO_17.skeleton)
    as_object = draw_poses(_blank(), [SimpleNamespace(**_person())], COCO_17.skeleton)
    np.testing.assert_array_equal(as_dict, as_object)

    box_only = draw_poses(_blank(), [{"track_id": 1, "box": BOX}], COCO_17.skeleton)
    keypoints_only = draw_poses(_blank(), [{"keypoints": _person()["keypoints"]}], COCO_17.skeleton)
    assert box_only[int(BOX[1]), 70].any() and not box_only[60, 40].any()
    assert keypoints_only[60, 40].any() and not keypoints_only[90, int(BOX[0])].any()


def test_bad_input_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="uint8"):
        draw_poses(np.zeros((HEIGHT, WIDTH, 3), np.float32), [], COCO_17.skeleton)
    with pytest.raises(ValueError, match="5 keypoints"):
        draw_poses(_blank(), [{"keypoints": [[1, 1, 1]] * 5}], COCO_17.skeleton)
