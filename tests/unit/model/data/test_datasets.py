"""PoseTrackClips and CocoKeypoints on real annotation files with images made by the tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from tdmi.model.codec import decode_heatmaps
from tdmi.model.data.datasets import CocoKeypoints, ImageCache, PoseTrackClips
from tdmi.model.data.transforms import AugmentConfig
from tdmi.model.geometry import apply_affine, invert_affine
from tdmi.model.inputs import IMAGENET_MEAN, IMAGENET_STD
from tdmi.model.joints import COCO_17, POSETRACK_17

DATA = Path(__file__).parents[3] / "data"
PT18 = DATA / "posetrack18_sample"
LEFT_WRIST, RIGHT_WRIST = POSETRACK_17.joints.index("left_wrist"), POSETRACK_17.joints.index("right_wrist")


def _brightness(inputs: torch.Tensor) -> np.ndarray:
    """Normalised (..., 3, H, W) model input -> (..., H, W) grey levels 0..255."""
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return ((inputs * std + mean) * 255).mean(dim=-3).numpy()


def _write_video(root: Path, name: str, images: list[np.ndarray], people: list[list[dict]]) -> Path:
    """PNG frames under root/images/<name>/ and a PoseTrack 2018 file under root/annotations/."""
    records, annotations = [], []
    for t, (image, persons) in enumerate(zip(images, people)):
        file_name = f"images/{name}/{t:06d}.png"
        (root / file_name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / file_name), image)
        image_id = 10_000 + t
        records.append(
            {"id": image_id, "frame_id": image_id, "file_name": file_name, "is_labeled": bool(persons)}
        )
        annotations += [dict(p, image_id=image_id) for p in persons]
    path = root / "annotations" / f"{name}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({"images": records, "annotations": annotations, "categories": []}))
    return path.parent


def _person(box: list[float], joints: dict[int, tuple[float, float]], track_id: int = 7) -> dict:
    keypoints = np.zeros((17, 3))
    for j, (x, y) in joints.items():
        keypoints[j] = (x, y, 1)
    x1, y1, x2, y2 = box
    return {"bbox": [x1, y1, x2 - x1, y2 - y1], "keypoints": keypoints.ravel().tolist(), "track_id": track_id}


def test_clips_at_video_boundaries_repeat_the_key_frame(tmp_path: Path) -> None:
    """Each frame is painted with its own index; the clip's frames are read back from the pixels."""
    frames = [np.full((40, 60, 3), 10 + 30 * t, np.uint8) for t in range(6)]
    person = _person([10, 5, 50, 35], {0: (30, 20)})
    annotations = _write_video(tmp_path, "painted", frames, [[person]] * 6)
    dataset = PoseTrackClips(tmp_path, annotations, input_size=(32, 24), radius=2)
    assert len(dataset) == 6
    expected = {
        0: [0, 0, 0, 1, 2],
        1: [1, 0, 1, 2, 3],
        3: [1, 2, 3, 4, 5],
        4: [2, 3, 4, 5, 4],
        5: [3, 4, 5, 5, 5],
    }
    for key, order in expected.items():
        sample = dataset[key]
        assert sample["meta"]["frame"] == key and sample["meta"]["image_id"] == 10_000 + key
        centre = _brightness(sample["inputs"])[:, 16, 12]
        np.testing.assert_allclose((centre - 10) / 30, order, atol=0.02)


def test_sample_contract_and_collation(tmp_path: Path) -> None:
    frames = [np.full((48, 64, 3), 100, np.uint8)] * 3
    person = _person([8, 4, 40, 44], {0: (20, 10), 5: (18, 20), 6: (30, 20)}, track_id=4)
    annotations = _write_video(tmp_path, "seq", frames, [[], [person], []])
    clips = PoseTrackClips(tmp_path, annotations, input_size=(64, 48), radius=2, sigma=1.5)
    assert len(clips) == 1 and clips.sequences[0].name == "seq" and len(clips.sequences[0].images) == 3
    sample = clips[0]
    assert sample["inputs"].shape == (5, 3, 64, 48) and sample["inputs"].dtype == torch.float32
    assert sample["target"].shape == (17, 16, 12) and sample["target"].dtype == torch.float32
    assert sample["target_weight"].shape == (17,) and sample["target_weight"].dtype == torch.float32
    meta = sample["meta"]
    assert (meta["index"], meta["sequence"], meta["frame"], meta["track_id"]) == (0, "seq", 1, 4)
    assert meta["box"].tolist() == [8, 4, 40, 44] and meta["box_score"].item() == 1.0
    assert meta["affine"].shape == (2, 3) and meta["joints"].shape == (17, 3)
    # the affine takes the box centre to the input centre
    np.testing.assert_allclose(
        apply_affine(np.array([24.0, 24.0]), meta["affine"].double().numpy()), [24, 32]
    )
    batch = next(iter(DataLoader(clips, batch_size=2)))
    assert batch["inputs"].shape == (1, 5, 3, 64, 48) and batch["meta"]["sequence"] == ["seq"]
    assert batch["meta"]["image_id"].tolist() == [10_001] and batch["meta"]["affine"].shape == (1, 2, 3)
    single = PoseTrackClips(tmp_path, annotations, input_size=(64, 48), radius=None)
    assert single[0]["inputs"].shape == (3, 64, 48)
    torch.testing.assert_close(single[0]["inputs"], sample["inputs"][2])  # the key frame sits in the middle


def test_target_weights_follow_visibility_and_evaluated_joints(tmp_path: Path) -> None:
    joints = {0: (30, 20), 3: (25, 18), 4: (35, 18), 5: (22, 30), 9: (400, 300)}  # ears, and a wrist far off
    person = _person([10, 5, 50, 45], joints)
    annotations = _write_video(tmp_path, "w", [np.zeros((50, 60, 3), np.uint8)], [[person]])
    sample = PoseTrackClips(tmp_path, annotations, input_size=(64, 48), radius=None)[0]
    weight = sample["target_weight"].numpy()
    assert np.flatnonzero(weight).tolist() == [0, 5]  # ears are not evaluated; the wrist lies off the crop
    assert sample["target"][[0, 5]].amax(dim=(1, 2)).min() > 0.9 and sample["target"][[3, 4, 9]].max() == 0


def _dot_image(points: list[tuple[float, float]], size: tuple[int, int] = (160, 200)) -> np.ndarray:
    """Black image with a bright Gaussian dot (sigma 1.5 px) at each sub-pixel point."""
    ys, xs = np.mgrid[: size[0], : size[1]].astype(np.float64)
    image = sum(np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * 1.5**2)) for x, y in points)
    return np.repeat((np.clip(image, 0, 1) * 255).round().astype(np.uint8)[..., None], 3, axis=2)


def _find_dot(grey: np.ndarray, near: np.ndarray) -> np.ndarray:
    """Intensity-weighted centre of the dot nearest to ``near`` (x, y)."""
    x, y = np.round(near).astype(int)
    window = grey[y - 4 : y + 5, x - 4 : x + 5].astype(np.float64)
    assert window.max() > 100, "no dot where it should be"
    wy, wx = np.mgrid[-4:5, -4:5]
    return np.array([x + (wx * window).sum() / window.sum(), y + (wy * window).sum() / window.sum()])


@pytest.mark.parametrize("flip_prob", [0.0, 1.0])
def test_a_keypoint_survives_crop_flip_rotation_scale_and_the_inverse(
    tmp_path: Path, flip_prob: float
) -> None:
    """A dot drawn at a keypoint is found in the warped crop where the affine puts it, and maps back.

    The person walks 6 px right per frame: every frame of the clip goes through the key frame's
    affine, so its dot must land where that same affine puts its own position.
    """
    dots = [(83.3 + 6 * t, 71.6) for t in range(3)]
    frames = [_dot_image([d]) for d in dots]
    people = [[_person([60, 40, 136.8, 142.4], {LEFT_WRIST: d, 0: (100.0, 50.0)})] for d in dots]
    annotations = _write_video(tmp_path, "dot", frames, people)
    augment = AugmentConfig(
        rotation_prob=1.0, scale_range=(0.8, 1.3), flip_prob=flip_prob, half_body_prob=0.0
    )
    dataset = PoseTrackClips(
        tmp_path, annotations, input_size=(128, 96), radius=1, train=True, augment=augment
    )
    for draw in range(4):
        torch.manual_seed(draw)
        sample = dataset[1]  # key frame 1 with neighbours 0 and 2
        affine = sample["meta"]["affine"].double().numpy()
        assert (np.linalg.det(affine[:, :2]) < 0) == bool(flip_prob)
        pixel = np.sqrt(abs(np.linalg.det(invert_affine(affine)[:, :2])))  # image pixels per input pixel
        grey = _brightness(sample["inputs"])
        for t, dot in enumerate(dots):
            expected = apply_affine(np.array(dot), affine)
            found = _find_dot(grey[t], expected)
            assert np.abs(found - expected).max() <= 0.5
            back = apply_affine(found, invert_affine(affine))
            assert np.abs(back - np.array(dot)).max() <= 0.5 * pixel
        # the target: after a flip the left wrist is drawn in the right wrist's channel
        channel, other = (RIGHT_WRIST, LEFT_WRIST) if flip_prob else (LEFT_WRIST, RIGHT_WRIST)
        assert sample["target_weight"][channel] == 1 and sample["target_weight"][other] == 0
        coords, _ = decode_heatmaps(sample["target"][None])
        key_dot = apply_affine(np.array(dots[1]), affine)
        assert np.abs(coords[0, channel].double().numpy() * 4 - key_dot).max() <= 4 * 0.25 + 1e-6


def _make_images(root: Path, records: list[dict]) -> None:
    for record in records:
        path = root / record["file_name"]
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), np.full((record["height"], record["width"], 3), 90, np.uint8))


def test_real_posetrack18_sample_with_ground_truth_and_detection_boxes(tmp_path: Path) -> None:
    raw = [json.loads(p.read_text()) for p in sorted((PT18 / "val").glob("*.json"))]
    _make_images(tmp_path, [r["images"][0] for r in raw])
    gt = PoseTrackClips(tmp_path, PT18 / "val", input_size=(384, 288), radius=2)
    annotations = [a for r in raw for a in r["annotations"]]
    assert len(gt) == sum(a["num_keypoints"] > 0 for a in annotations) == 14
    assert gt.sigma == 3.0  # the paper's sigma for a 96 x 72 heatmap
    sample = gt[1]
    np.testing.assert_allclose(
        sample["meta"]["joints"].numpy().ravel(), annotations[1]["keypoints"], rtol=1e-6
    )
    clip = sample["inputs"]
    assert all(torch.equal(clip[t], clip[2]) for t in range(5))  # one-frame videos: the key frame stands in

    detections = PT18 / "test_posetrack18_human_detections.json"
    dets = json.loads(detections.read_text())
    boxes = PoseTrackClips(tmp_path, PT18 / "val", input_size=(128, 96), radius=None, boxes=detections)
    assert len(boxes) == sum(d["score"] >= 0.2 for d in dets)
    strict = PoseTrackClips(tmp_path, PT18 / "val", (128, 96), None, boxes=detections, score_threshold=0.9)
    assert len(strict) == sum(d["score"] >= 0.9 for d in dets) < len(boxes)
    first = boxes[0]
    assert first["meta"]["box_score"].item() >= 0.2 and first["meta"]["track_id"] == -1
    assert first["target_weight"].sum() == 0 and first["meta"]["joints"].abs().sum() == 0
    with pytest.raises(ValueError, match="boxes='gt'"):
        PoseTrackClips(tmp_path, PT18 / "val", (128, 96), None, train=True, boxes=detections)


def test_bad_settings_and_missing_images_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="multiples of 4"):
        PoseTrackClips(tmp_path, PT18 / "val", input_size=(130, 96))
    with pytest.raises(ValueError, match="training only"):
        PoseTrackClips(tmp_path, PT18 / "val", augment=AugmentConfig())
    dataset = PoseTrackClips(tmp_path, PT18 / "val", input_size=(128, 96), radius=None)
    with pytest.raises(FileNotFoundError, match=r"images/val/003418_mpii_test/000000\.jpg"):
        dataset[0]


def test_image_cache_keeps_the_most_recent_frames(tmp_path: Path) -> None:
    paths = []
    for name in "abc":
        paths.append(tmp_path / f"{name}.png")
        cv2.imwrite(str(paths[-1]), np.full((4, 4, 3), ord(name), np.uint8))
    a, b, c = paths
    cache = ImageCache(capacity=2)
    for path in (a, b, a, c):  # b is the least recently used when c arrives
        cache.read(path)
    a.unlink(), b.unlink()
    assert cache.read(a)[0, 0, 0] == ord("a")  # still cached
    with pytest.raises(FileNotFoundError, match=r"b\.png"):
        cache.read(b)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot decode"):
        cache.read(tmp_path / "bad.png")


def test_coco_keypoints_single_images(tmp_path: Path) -> None:
    annotations = tmp_path / "person_keypoints.json"
    shutil.copy(DATA / "coco_sample" / "test_coco.json", annotations)
    raw = json.loads(annotations.read_text())
    _make_images(tmp_path / "val2017", raw["images"])
    dataset = CocoKeypoints(tmp_path / "val2017", annotations, input_size=(128, 96))
    people = [a for a in raw["annotations"] if a["num_keypoints"] > 0 and not a["iscrowd"]]
    assert len(dataset) == len(people) == 12 and dataset.layout is COCO_17
    assert [f.image_id for f in dataset.images] == [i["id"] for i in raw["images"]]
    for index in (0, 5):
        sample = dataset[index]
        meta = sample["meta"]
        assert sample["inputs"].shape == (3, 128, 96) and sample["target"].shape == (17, 32, 24)
        assert (meta["sequence"], meta["frame"], meta["track_id"]) == ("", 0, -1)
        visible = meta["joints"][:, 2] > 0
        in_input = apply_affine(meta["joints"][:, :2].double().numpy(), meta["affine"].double().numpy())
        inside = torch.from_numpy((in_input >= 0).all(axis=1) & (in_input < [96, 128]).all(axis=1))
        assert torch.equal(sample["target_weight"] > 0, visible & inside)  # COCO evaluates all 17
        assert visible.sum() == people[index]["num_keypoints"]
    train = CocoKeypoints(tmp_path / "val2017", annotations, (128, 96), train=True, augment=AugmentConfig())
    assert train[3]["inputs"].shape == (3, 128, 96)
