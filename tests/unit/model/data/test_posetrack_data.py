"""PoseTrack 2018 loading (real sample), PoseTrack 2017 conversion, detection files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tdmi.model.data.detections import read_detections
from tdmi.model.data.posetrack import keypoint_box, load_sequence, load_sequences
from tdmi.model.data.posetrack17 import POSETRACK17_JOINTS, PT17_TO_SLOT, convert_annolist, posetrack_image_id
from tdmi.model.joints import POSETRACK_17
from tdmi.service.cli import main

SAMPLE = Path(__file__).parents[3] / "data" / "posetrack18_sample"
DETECTIONS = SAMPLE / "test_posetrack18_human_detections.json"


def test_real_sample_loads_with_its_people_joints_and_ignore_regions() -> None:
    sequences = load_sequences(SAMPLE / "val")
    assert [s.name for s in sequences] == ["003418_mpii_test", "009473_mpii_test", "012834_mpii_test"]
    # counts as documented in tests/data/SOURCES.md
    assert [s.num_people for s in sequences] == [1, 2, 11]
    assert [len(s.images[0].ignore_regions) for s in sequences] == [9, 2, 4]
    assert [p.num_labelled for p in sequences[0].images[0].people] == [11]
    assert [p.num_labelled for p in sequences[1].images[0].people] == [14, 15]
    for seq in sequences:
        raw = json.loads((SAMPLE / "val" / f"{seq.name}.json").read_text())
        (frame,) = seq.images
        assert frame.is_labeled and frame.record is not None and frame.record["file_name"] == frame.file_name
        assert frame.image_id == raw["images"][0]["id"] and frame.file_name.startswith("images/val/")
        for region, xs, ys in zip(
            frame.ignore_regions, raw["images"][0]["ignore_regions_x"], raw["images"][0]["ignore_regions_y"]
        ):
            np.testing.assert_array_equal(region, np.stack([xs, ys], axis=1))
        for person, ann in zip(frame.people, raw["annotations"]):
            assert person.track_id == ann["track_id"]
            assert person.num_labelled == ann["num_keypoints"]
            x, y, w, h = ann["bbox"]
            np.testing.assert_allclose(person.box, [x, y, x + w, y + h], rtol=1e-6)
            assert (person.keypoints[[3, 4]] == 0).all()  # PoseTrack has no ears
        assert seq.categories[0]["keypoints"] == list(POSETRACK_17.joints)


def test_bad_annotation_files_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_sequences(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"no \*\.json"):
        load_sequences(tmp_path)
    cases = {
        "annolist.json": ({"annolist": []}, "convert posetrack17"),
        "short.json": (
            {
                "images": [{"id": 1, "file_name": "a.jpg"}],
                "annotations": [{"image_id": 1, "keypoints": [1, 2, 1]}],
            },
            "expected 51 keypoint values",
        ),
        "orphan.json": ({"images": [], "annotations": [{"image_id": 7}]}, "image_id 7"),
        "nofile.json": ({"images": [{"id": 1}]}, "no 'file_name'"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_text(json.dumps(content))
        with pytest.raises(ValueError, match=message):
            load_sequence(tmp_path / name)
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_sequence(tmp_path / "broken.json")


def test_posetrack21_style_frames_and_people(tmp_path: Path) -> None:
    """Unlabelled frames with box-only people; a person without bbox gets one from its joints."""
    joints = np.zeros((17, 3))
    joints[[0, 5]] = [[10, 20, 1], [30, 60, 1]]
    content = {
        "images": [
            {"id": 5, "frame_id": 5, "file_name": "a/0.jpg", "is_labeled": False, "has_labeled_person": True},
            {"id": 6, "frame_id": 6, "file_name": "a/1.jpg", "is_labeled": True},
        ],
        "annotations": [
            {"image_id": 5, "bbox": [1, 2, 3, 4], "person_id": 9, "track_id": 0},
            {"image_id": 6, "keypoints": joints.ravel().tolist(), "person_id": 9},
        ],
    }
    (tmp_path / "seq.json").write_text(json.dumps(content))
    seq = load_sequence(tmp_path / "seq.json")
    (boxed,), (jointed,) = (frame.people for frame in seq.images)
    assert not seq.images[0].is_labeled and seq.images[1].is_labeled
    assert boxed.num_labelled == 0 and boxed.box.tolist() == [1, 2, 4, 6]
    assert jointed.track_id == -1 and jointed.num_labelled == 2
    # extent 20 x 40 around (20, 40), grown 1.3x as poseval does
    np.testing.assert_allclose(jointed.box, [20 - 13, 40 - 26, 20 + 13, 40 + 26])
    assert keypoint_box(np.zeros((17, 3), np.float32)) is None


def _annolist() -> dict:
    """A hand-made two-frame PoseTrack 2017 video (values wrapped in lists, 15 joint ids)."""

    def point(joint: int, x: float, y: float, visible: int = 1) -> dict:
        return {"id": [joint], "x": [x], "y": [y], "is_visible": [visible]}

    points = [point(j, 100 + 10 * j, 200 + 5 * j) for j in range(14)] + [point(14, 90, 40, visible=0)]
    person = {
        "track_id": [3],
        "x1": [100],
        "y1": [50],
        "x2": [140],
        "y2": [95],
        "annopoints": [{"point": points}],
    }
    head_only = {"track_id": [4], "x1": [5], "y1": [6], "x2": [7], "y2": [8], "annopoints": []}
    region = {"point": [{"x": [0], "y": [0]}, {"x": [50], "y": [0]}, {"x": [50], "y": [30]}]}
    return {
        "annolist": [
            {
                "image": [{"name": "images/bonn/000042_bonn/00001.jpg"}],
                "imgnum": [1],
                "annorect": [],
                "is_labeled": [0],
            },
            {
                "image": [{"name": "images/bonn/000042_bonn/00002.jpg"}],
                "imgnum": [2],
                "is_labeled": [1],
                "annorect": [person, head_only],
                "ignore_regions": [region],
            },
        ]
    }


def test_posetrack17_joint_ids_go_to_the_slots_of_the_same_name() -> None:
    assert len(PT17_TO_SLOT) == 15 and len(set(PT17_TO_SLOT)) == 15
    assert {POSETRACK_17.joints[s] for s in PT17_TO_SLOT} == set(POSETRACK17_JOINTS)
    assert set(range(17)) - set(PT17_TO_SLOT) == {
        POSETRACK_17.joints.index("left_ear"),
        POSETRACK_17.joints.index("right_ear"),
    }
    assert PT17_TO_SLOT[POSETRACK17_JOINTS.index("head_bottom")] == 1  # poseval's "neck"


def test_posetrack17_conversion_through_the_cli(tmp_path: Path, capsys) -> None:
    src, out = tmp_path / "pt17", tmp_path / "pt18"
    src.mkdir()
    (src / "000042_bonn.json").write_text(json.dumps(_annolist()))
    assert main(["convert", "posetrack17", "--src", str(src), "--out", str(out)]) == 0
    assert "1 videos, 2 frames, 2 people" in capsys.readouterr().out
    seq = load_sequence(out / "000042_bonn.json")
    first, second = seq.images
    assert (first.image_id, second.image_id) == (2_0000420001, 2_0000420002)  # type 2 = bonn, video 42, frame
    assert not first.is_labeled and second.is_labeled and first.people == ()
    assert second.record["nframes"] == 2 and second.record["vid_id"] == "000042"
    assert second.file_name == "images/bonn/000042_bonn/00002.jpg"
    np.testing.assert_array_equal(second.ignore_regions[0], [[0, 0], [50, 0], [50, 30]])
    person, head_only = second.people
    assert person.track_id == 3 and head_only.track_id == 4
    for joint in range(15):  # PoseTrack 2017 joint j was put at (100 + 10 j, 200 + 5 j), head top elsewhere
        slot = POSETRACK_17.joints.index(POSETRACK17_JOINTS[joint])
        expected = [90, 40, 1] if joint == 14 else [100 + 10 * joint, 200 + 5 * joint, 1]
        np.testing.assert_array_equal(person.keypoints[slot], expected)  # annotated though occluded: v = 1
    assert person.num_labelled == 15 and head_only.num_labelled == 0 and head_only.box is None
    raw = json.loads((out / "000042_bonn.json").read_text())
    ann = raw["annotations"][0]
    assert ann["bbox_head"] == [100, 50, 40, 45] and ann["id"] == 2_0000420002 * 100
    x, y, w, h = ann["bbox"]  # extent of the joints (90..230, 40..265) grown 1.3x
    np.testing.assert_allclose([x + w / 2, y + h / 2, w, h], [160, 152.5, 140 * 1.3, 225 * 1.3])
    assert raw["categories"][0]["keypoints"] == list(POSETRACK_17.joints)


def test_posetrack17_bad_input_fails_with_one_line(tmp_path: Path, capsys) -> None:
    src = tmp_path / "pt17"
    src.mkdir()
    data = _annolist()
    data["annolist"][0]["image"][0]["name"] = "images/frame1.jpg"
    (src / "bad.json").write_text(json.dumps(data))
    assert main(["convert", "posetrack17", "--src", str(src), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tdmi: error:") and "images/frame1.jpg" in err
    with pytest.raises(ValueError, match="annolist"):
        convert_annolist({"images": []})
    with pytest.raises(ValueError, match="not a PoseTrack 2017 joint"):
        bad = _annolist()
        bad["annolist"][1]["annorect"][0]["annopoints"][0]["point"][0]["id"] = [15]
        convert_annolist(bad)
    assert posetrack_image_id("images/mpii_5sec/024165_mpii_relpath_5sec/00000031.jpg") == 1_0241650031


def test_detections_keep_persons_above_the_threshold_best_first() -> None:
    raw = json.loads(DETECTIONS.read_text())
    everything = read_detections(DETECTIONS, score_threshold=0.0)
    assert sorted(len(v) for v in everything.values()) == [78, 100, 100]  # as in SOURCES.md
    kept = read_detections(DETECTIONS)  # the papers' 0.2
    assert sum(len(v) for v in kept.values()) == sum(d["score"] >= 0.2 for d in raw) < len(raw)
    for image_id, boxes in kept.items():
        scores = [d.score for d in boxes]
        assert scores == sorted(scores, reverse=True) and min(scores) >= 0.2
        first = max((d for d in raw if d["image_id"] == image_id), key=lambda d: d["score"])
        x, y, w, h = first["bbox"]
        np.testing.assert_allclose(boxes[0].box, [x, y, x + w, y + h], rtol=1e-6)


def test_detections_skip_other_categories_and_reject_bad_entries(tmp_path: Path) -> None:
    path = tmp_path / "dets.json"
    path.write_text(json.dumps([
        {"image_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9, "category_id": 1},
        {"image_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9, "category_id": 3},
        {"image_id": 2, "bbox": [5, 5, 1, 1], "score": 0.5},
        {"image_id": 2, "bbox": [5, 5, 1, 1], "score": 0.1},
    ]))  # fmt: skip
    kept = read_detections(path, score_threshold=0.2)
    assert {k: len(v) for k, v in kept.items()} == {1: 1, 2: 1}
    path.write_text(json.dumps([{"image_id": 1, "bbox": [0, 0, 10], "score": 0.9}]))
    with pytest.raises(ValueError, match="expected \\[x, y, w, h\\]"):
        read_detections(path)
    path.write_text(json.dumps({"image_id": 1}))
    with pytest.raises(ValueError, match="JSON list"):
        read_detections(path)
    with pytest.raises(FileNotFoundError, match=r"missing\.json"):
        read_detections(tmp_path / "missing.json")
