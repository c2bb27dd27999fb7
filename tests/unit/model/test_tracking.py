"""Pose tracker: stable ids through crossings, new ids for new people, expiry, ids across trackers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tdmi.model.tracking import (
    PoseTracker,
    TrackerConfig,
    box_containment,
    box_iou,
    keypoint_similarity,
    keypoints_inside,
)

# x offset (fraction of height) and y (fraction of height from the top) of 17 joints, arms down
_STANDING = np.array(
    [
        [0.0, 0.06], [0.02, 0.04], [-0.02, 0.04], [0.04, 0.05], [-0.04, 0.05],
        [0.1, 0.2], [-0.1, 0.2], [0.13, 0.35], [-0.13, 0.35], [0.14, 0.48], [-0.14, 0.48],
        [0.07, 0.52], [-0.07, 0.52], [0.07, 0.74], [-0.07, 0.74], [0.07, 0.96], [-0.07, 0.96],
    ]
)  # fmt: skip


def _person(cx: float, height: float = 200.0, top: float = 50.0, arms_up: bool = False):
    """Box (4,) and keypoints (17, 3) of a synthetic upright person."""
    layout = _STANDING.copy()
    if arms_up:  # elbows beside the head, wrists at the top of the box
        layout[7:9, 1], layout[9:11, 1] = 0.1, 0.02
    points = np.column_stack([cx + layout[:, 0] * height, top + layout[:, 1] * height, np.ones(17)])
    box = np.array([cx - 0.2 * height, top, cx + 0.2 * height, top + height])
    return box, points


def _frame(*people):
    boxes, points = zip(*people)
    return np.stack(boxes), np.stack(points)


def test_box_iou_of_known_boxes() -> None:
    a = np.array([[0, 0, 10, 10], [0, 0, 0, 10]])
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]])
    np.testing.assert_allclose(box_iou(a, b), [[50 / 150, 0, 1], [0, 0, 0]])


def test_keypoint_similarity_is_one_for_the_same_pose_and_falls_with_distance() -> None:
    box, points = _person(100)
    config = TrackerConfig()
    near, far = points.copy(), points.copy()
    near[:, 0] += 5
    far[:, 0] += 80
    candidates = np.stack([points, near, far])
    sim, usable = keypoint_similarity(points[None], candidates, np.stack([box] * 3), config)
    assert usable.all()
    area = 80.0 * 200.0  # OKS scale: the candidate's box area; kappa = 2 sigma
    assert sim[0, 0] == pytest.approx(1.0)
    assert sim[0, 1] == pytest.approx(np.exp(-(5**2) / (2 * area * (2 * config.keypoint_sigma) ** 2)))
    assert sim[0, 2] < 1e-3


def test_unconfident_joints_leave_the_decision_to_iou() -> None:
    box, points = _person(100)
    faint = points.copy()
    faint[2:, 2] = 0.1  # only 2 confident joints in common, fewer than min_shared_keypoints
    _, usable = keypoint_similarity(points[None], faint[None], box[None], TrackerConfig())
    assert not usable.any()


def test_two_people_crossing_keep_their_ids() -> None:
    """A (arms up) walks right, B (arms down) walks left; in frames 5 and 6 their boxes are the
    same, so only their keypoints tell them apart. B is listed first, A's track is the older."""
    tracker = PoseTracker(TrackerConfig())
    ids_a, ids_b = [], []
    for step in range(11):
        a = _person(100 + 20 * step, arms_up=True)
        b = _person(300 - 20 * step)
        boxes, points = _frame(b, a)
        if step == 0:
            boxes, points = boxes[::-1], points[::-1]  # A starts its track first
            got_a, got_b = tracker.update(boxes, points)
        else:
            got_b, got_a = tracker.update(boxes, points)
        ids_a.append(got_a)
        ids_b.append(got_b)
    assert len(set(ids_a)) == 1 and len(set(ids_b)) == 1 and ids_a[0] != ids_b[0]


def test_a_person_leaving_and_another_entering_elsewhere_gets_a_new_id() -> None:
    tracker = PoseTracker(TrackerConfig())
    first = [int(tracker.update(*_frame(_person(100)))[0]) for _ in range(3)]
    newcomer = int(tracker.update(*_frame(_person(600)))[0])
    assert len(set(first)) == 1 and newcomer != first[0]


def test_a_track_survives_max_age_missed_frames_and_no_more() -> None:
    config = TrackerConfig(max_age=2)
    box, _ = _person(100)
    empty = np.zeros((0, 4))

    tracker = PoseTracker(config)
    first = tracker.update(box[None])
    for _ in range(config.max_age):
        assert tracker.update(empty).shape == (0,)
    assert tracker.tracks[0].misses == config.max_age
    assert tracker.update(box[None]) == first  # back in time: same id

    tracker = PoseTracker(config)
    first = tracker.update(box[None])
    for _ in range(config.max_age + 1):
        tracker.update(empty)
    assert tracker.tracks == ()
    assert tracker.update(box[None]) != first


def test_trackers_never_share_ids() -> None:
    boxes = _frame(_person(100), _person(300), _person(500))[0]
    one, two = PoseTracker(), PoseTracker()
    ids_one = one.update(boxes).tolist() + one.update(boxes[:1] + 400).tolist()
    ids_two = two.update(boxes).tolist()
    assert len(set(ids_one)) == 4 and len(set(ids_two)) == 3
    assert not set(ids_one) & set(ids_two)


def test_a_custom_id_source_is_used_and_must_not_repeat_a_live_id() -> None:
    tracker = PoseTracker(id_source=itertools.count(1000).__next__)
    assert tracker.update(_frame(_person(100), _person(400))[0]).tolist() == [1000, 1001]
    stuck = PoseTracker(id_source=lambda: 7)
    stuck.update(_frame(_person(100))[0])
    with pytest.raises(ValueError, match="still live"):
        stuck.update(_frame(_person(100), _person(600))[0])


def test_empty_frames_give_no_ids_and_age_the_tracks() -> None:
    tracker = PoseTracker()
    assert tracker.update(np.zeros((0, 4))).dtype == np.int64
    assert tracker.update([]).shape == (0,)
    tracker.update(_frame(_person(100))[0])
    tracker.update(np.zeros((0, 4)), np.zeros((0, 17, 3)))
    assert [t.misses for t in tracker.tracks] == [1]


def test_streaming_order_boxes_first_keypoints_later() -> None:
    """update(boxes) gives ids; observe_keypoints stores the pose; ids of dropped tracks are ignored."""
    tracker = PoseTracker(TrackerConfig(max_age=0))
    box, points = _person(100)
    ids = tracker.update(box[None])
    assert tracker.tracks[0].keypoints is None
    tracker.observe_keypoints(ids, points[None])
    np.testing.assert_array_equal(tracker.tracks[0].keypoints, points)
    tracker.update(np.zeros((0, 4)))  # max_age 0: the track is gone
    tracker.observe_keypoints(ids, points[None])
    assert tracker.tracks == ()


def test_bad_input_is_refused_with_a_clear_message() -> None:
    tracker = PoseTracker()
    with pytest.raises(ValueError, match=r"shape \(N, 4\)"):
        tracker.update(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="finite"):
        tracker.update(np.array([[0, 0, np.nan, 1]]))
    with pytest.raises(ValueError, match=r"shape \(1, J, 3\)"):
        tracker.update(np.zeros((1, 4)), np.zeros((2, 17, 3)))
    with pytest.raises(ValueError, match="max_age"):
        TrackerConfig(max_age=-1)
    with pytest.raises(ValueError, match="weights"):
        TrackerConfig(iou_weight=0, keypoint_weight=0)


def test_a_track_follows_its_keypoints_and_coasts_max_coast_frames_without_them() -> None:
    config = TrackerConfig(max_coast=3, max_age=5)
    tracker = PoseTracker(config)
    box, points = _person(100)
    (track_id,) = tracker.update(box[None])
    for step in range(1, 6):  # the pose model sees the person walk 10 px per frame
        tracker.observe_keypoints(np.array([track_id]), points[None] + [10 * step, 0, 0])
        followed = tracker.step()
        assert followed.track_ids.tolist() == [track_id] and followed.measured.tolist() == [True]
    assert followed.boxes[0, 0] > box[0] + 30  # the box went with them
    coasted = [tracker.step() for _ in range(config.max_coast + 1)]
    assert [len(f.track_ids) for f in coasted] == [1, 1, 1, 0] and coasted[-1].lost == 1
    assert coasted[1].boxes[0, 0] > coasted[0].boxes[0, 0]  # still walking on its motion
    assert tracker.tracks[0].misses == 1  # lost, kept for a box to find it again


def test_keypoints_move_the_box_and_never_reshape_it() -> None:
    """Three confident joints, the head, placed 30 px off the person: the box keeps the detector's
    size and walks with the joints' displacement, 6 px per frame."""
    tracker = PoseTracker()
    box, points = _person(100)
    (track_id,) = tracker.update(box[None])
    head = points.copy()
    head[3:, 2] = 0.1
    head[:3, :2] += 30
    for step in range(8):
        tracker.observe_keypoints(np.array([track_id]), head[None] + [6 * step, 0, 0])
        followed = tracker.step()
    size = followed.boxes[0, 2:4] - followed.boxes[0, :2]
    np.testing.assert_allclose(size, box[2:] - box[:2], atol=0.5)
    # the displacements of 7 frames, and the speed carried one frame on
    assert 7 * 6 - 6 < followed.boxes[0, 0] - box[0] < 8 * 6 + 6


def test_a_person_half_hidden_keeps_the_id_though_the_box_shrank_inside_the_old_one() -> None:
    tracker = PoseTracker()
    box, _ = _person(100)
    other, _ = _person(400)
    ids = tracker.update(np.stack([box, other]))
    legs_hidden = box.copy()
    legs_hidden[3] = box[1] + 0.25 * (box[3] - box[1])  # only the head and shoulders left
    assert box_iou(box[None], legs_hidden[None])[0, 0] < 0.3
    assert tracker.update(np.stack([legs_hidden, other])).tolist() == ids.tolist()
    assert tracker.update(np.stack([box, other])).tolist() == ids.tolist()  # and grew back


def test_box_containment_is_the_share_of_the_smaller_box_inside_the_larger() -> None:
    big = np.array([[0.0, 0.0, 10.0, 10.0]])
    found = box_containment(big, np.array([[2.0, 2.0, 4.0, 4.0], [8.0, 0.0, 12.0, 10.0], [20.0, 0, 30, 10]]))
    np.testing.assert_allclose(found, [[1.0, 0.5, 0.0]])


def test_a_lost_track_is_found_again_where_its_motion_carried_it() -> None:
    tracker = PoseTracker(TrackerConfig(max_coast=0, max_age=10))
    ids = [int(tracker.update(_person(100 + 8 * step)[0][None])[0]) for step in range(6)]
    for _ in range(6, 12):  # six frames with nobody found
        assert tracker.update(np.zeros((0, 4))).shape == (0,)
    back = int(tracker.update(_person(100 + 8 * 12)[0][None])[0])
    assert len(set(ids)) == 1 and back == ids[0]  # 48 px from where it was lost: IoU alone fails
    assert box_iou(_person(100 + 8 * 5)[0][None], _person(100 + 8 * 12)[0][None])[0, 0] < 0.3


def test_faint_boxes_keep_a_followed_person_and_never_start_a_track() -> None:
    tracker = PoseTracker()
    (kept,) = tracker.update(_person(100)[0][None])
    tracker.step()
    faint = np.stack([_person(102)[0], _person(600)[0]])
    ids = tracker.match(faint, sure=np.array([False, False]))
    assert ids.tolist() == [kept, -1]
    assert [t.track_id for t in tracker.tracks] == [kept] and tracker.tracks[0].misses == 0
    tracker.step()
    assert tracker.match(faint[1:], sure=np.array([True])).tolist() != [-1]  # a sure box starts one


def test_keypoints_inside_a_box_count_the_confident_ones_only() -> None:
    box, points = _person(100)
    points[:3, 2] = 0.1  # three unsure joints
    share, usable = keypoints_inside(points[None], np.stack([box, box + [40, 0, 40, 0]]), TrackerConfig())
    assert usable.tolist() == [True]
    assert share[0, 0] == 1.0 and 0 < share[0, 1] < 1.0


def test_a_new_track_whose_pose_comes_back_unsure_stops_at_once_and_keeps_its_id() -> None:
    tracker = PoseTracker(TrackerConfig(max_coast=5))
    box, points = _person(100)
    door, _ = _person(500)
    ids = tracker.update(np.stack([box, door]))
    unsure = points.copy()
    unsure[:, 2] = 0.1
    tracker.observe_keypoints(ids, np.stack([points, unsure]))
    followed = tracker.step()
    assert followed.track_ids.tolist() == [ids[0]] and followed.lost == 0  # not counted as a lost person
    assert tracker.update(np.stack([box, door])).tolist() == ids.tolist()  # a second box: same id
