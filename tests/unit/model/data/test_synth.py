"""Synthetic PoseTrack data: determinism, the official file format, labels that match the pixels,
the MP4 twin of each video, and ``tdmi synth`` on the command line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from tdmi.model.data.datasets import PoseTrackClips
from tdmi.model.data.posetrack import load_sequences
from tdmi.model.data.synth.annotations import person_annotation
from tdmi.model.data.synth.appearance import sample_appearance
from tdmi.model.data.synth.motion import Segment, simulate
from tdmi.model.data.synth.render import BLUR_FLAG_PX, DEFOCUS_FLAG_PX, render_frame
from tdmi.model.data.synth.scene import (
    DEFOCUS_MAX_PX,
    Camera,
    Occluder,
    Person,
    Scene,
    SceneSpec,
    person_points,
    sample_scene,
)
from tdmi.model.data.synth.skeleton import BodyShape, body_points
from tdmi.model.data.synth.writer import SynthOptions, generate_dataset, video_codec
from tdmi.service.cli import main

OFFICIAL = Path(__file__).parents[3] / "data" / "posetrack18_sample" / "val" / "009473_mpii_test.json"
SMALL = {"videos": 2, "frames": 6, "width": 96, "height": 64}
BACKDROP = (255.0, 0.0, 255.0)  # magenta: no skin, hair or cloth colour comes close in these tests
W, H, FPS = 160, 120, 25.0


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    generate_dataset(SynthOptions(out=out, seed=5, **SMALL))
    return out


def _camera(shake: float = 0.0) -> Camera:
    return Camera(
        width=W, height=H, focal=150.0, horizon=20.0, elevation=1.4, shake_amplitude=shake,
        shake_freq=np.full((2, 3), 5.0), shake_phase=np.zeros((2, 3)), shake_weight=np.full((2, 3), 1 / 3),
    )  # fmt: skip


def _person(segment: Segment, u: float, px_height: float, seed: int = 0) -> Person:
    """A 1.7 m person doing ``segment`` whose neck is at image column ``u`` at t = 0."""
    shape = BodyShape(height=1.7)
    z0 = 150.0 * shape.height / px_height
    motion = simulate(shape, (segment,), z0, (0.5, 50.0))
    state = motion.state(0.0)
    return Person(
        motion.shifted((u - W / 2) * state.z / 150.0 - state.x),
        sample_appearance(np.random.default_rng(seed), 0.5),
    )


def _scene(
    persons: list[Person],
    occluders: tuple[Occluder, ...] = (),
    exposure: float = 0.0,
    defocus: np.ndarray | None = None,
) -> Scene:
    """A flat magenta stage: no noise, no tone curve, no shake; blur on every frame if ``exposure``."""
    background = np.empty((H + 2, W + 2, 3), np.uint8)
    background[:] = BACKDROP
    spec = SceneSpec(W, H, FPS, 8, len(persons), len(persons))
    blur = np.full(8, exposure > 0)
    return Scene(
        spec, _camera(), background, 1, tuple(persons), occluders, exposure, blur, None, None, 0.5, defocus
    )


def test_same_arguments_give_identical_files(dataset: Path, tmp_path: Path) -> None:
    generate_dataset(SynthOptions(out=tmp_path, seed=5, **SMALL))
    files = sorted(p.relative_to(dataset) for p in dataset.rglob("*") if p.suffix in (".json", ".jpg"))
    assert len(files) == 2 + 2 * 6
    for rel in files:
        assert (tmp_path / rel).read_bytes() == (dataset / rel).read_bytes(), rel
    other = tmp_path / "other"
    generate_dataset(SynthOptions(out=other, seed=6, **SMALL))
    first = cv2.imread(str(other / "images/train/synth_600000/000000.jpg"))
    assert not np.array_equal(first, cv2.imread(str(dataset / "images/train/synth_500000/000000.jpg")))


def test_files_follow_the_official_posetrack_2018_format(dataset: Path) -> None:
    official = json.loads(OFFICIAL.read_text())
    for path in sorted((dataset / "annotations" / "train").glob("*.json")):
        data = json.loads(path.read_text())
        assert data["categories"] == official["categories"]
        images, annotations = data["images"], data["annotations"]
        assert len(images) == 6 and all(image["nframes"] == 6 for image in images)
        for frame, image in enumerate(images):
            assert set(official["images"][0]) - {"mask_file"} <= set(image)
            assert image["file_name"] == f"images/train/{path.stem}/{frame:06d}.jpg"
            assert (dataset / image["file_name"]).is_file()
            assert image["id"] == image["frame_id"] == int(f"1{image['vid_id']}{frame:04d}")
            assert (
                image["is_labeled"] is True and image["ignore_regions_x"] == image["ignore_regions_y"] == []
            )
            tags = image["synthetic"]
            assert set(tags) == {"occluded", "blurred", "motion_blur_px", "defocus_px"}
            strong = tags["motion_blur_px"] >= BLUR_FLAG_PX or tags["defocus_px"] >= DEFOCUS_FLAG_PX
            assert tags["blurred"] == strong
        ids = {image["id"]: image for image in images}
        seen = set()
        for ann in annotations:
            assert set(official["annotations"][0]) <= set(ann)
            assert ann["image_id"] in ids and ann["id"] == ann["image_id"] * 100 + ann["track_id"]
            assert (ann["image_id"], ann["track_id"]) not in seen
            seen.add((ann["image_id"], ann["track_id"]))
            points = np.array(ann["keypoints"], dtype=float).reshape(17, 3)
            assert len(ann["keypoints"]) == 51 and ann["category_id"] == 1 and ann["scores"] == []
            assert not points[3:5].any(), "ears are never labelled in PoseTrack"
            labelled = points[:, 2] == 1
            assert set(np.unique(points[:, 2])) <= {0.0, 1.0} and ann["num_keypoints"] == labelled.sum() > 0
            assert not points[~labelled].any()
            assert ((points[labelled, 0] >= 0) & (points[labelled, 0] <= 95)).all()
            assert ((points[labelled, 1] >= 0) & (points[labelled, 1] <= 63)).all()
            x, y, w, h = ann["bbox"]
            inside = points[labelled, :2]
            assert (inside[:, 0] >= x).all() and (inside[:, 0] <= x + w).all()
            assert (inside[:, 1] >= y).all() and (inside[:, 1] <= y + h).all()
            assert set(ann["occluded_joints"]) <= set(np.flatnonzero(labelled).tolist())
            occluded_image = ids[ann["image_id"]]["synthetic"]["occluded"]
            assert occluded_image or not ann["occluded_joints"]


def test_our_posetrack_loader_reads_the_files_into_training_clips(dataset: Path) -> None:
    sequences = load_sequences(dataset / "annotations" / "train")
    assert [s.name for s in sequences] == ["synth_500000", "synth_500001"]
    clips = PoseTrackClips(dataset, dataset / "annotations" / "train", input_size=(128, 96), radius=2)
    assert len(clips) == sum(s.num_people for s in sequences) > 0
    sample = clips[0]
    assert tuple(sample["inputs"].shape) == (5, 3, 128, 96)
    assert float(sample["target_weight"].sum()) > 0


def test_mp4_holds_the_same_frames(dataset: Path) -> None:
    with av.open(str(dataset / "videos" / "train" / "synth_500001.mp4")) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(stream)]
        assert stream.average_rate == 25
        assert stream.codec_context.name == ("h264" if video_codec() == "libx264" else "mpeg4")
    assert len(frames) == 6 and frames[0].shape == (64, 96, 3)
    jpeg = cv2.imread(str(dataset / "images" / "train" / "synth_500001" / "000003.jpg")).astype(float)
    assert np.abs(frames[3].astype(float) - jpeg).mean() < 6.0


@pytest.mark.parametrize(
    "segment",
    [
        Segment("walk", -1.0, 3.0, speed=1.4, heading=math.pi / 2),
        Segment("run", -1.0, 3.0, speed=4.0, heading=-math.pi / 2),
        Segment("wave", -1.0, 3.0, rate=2.0, facing=0.3),
        Segment("jump", -1.0, 3.0, rate=1.0, facing=-0.4),
        Segment("squat", -1.0, 3.0, rate=0.7, facing=math.pi),
        Segment("turn", -1.0, 3.0, spin=4.0),
    ],
    ids=lambda s: s.action,
)
def test_keypoints_land_on_the_drawn_figure(segment: Segment) -> None:
    scene = _scene([_person(segment, W / 2, 90.0)])
    for index in range(0, 8, 2):
        frame = render_frame(scene, index)
        labelled = frame.in_frame[0]
        assert labelled.sum() >= 14 and not labelled[3:5].any() and not frame.occluded.any()
        cols, rows = np.round(frame.keypoints[0, labelled]).astype(int).T
        distance = np.abs(frame.image[rows, cols].astype(float) - BACKDROP).sum(axis=1)
        assert (distance > 40).all(), f"frame {index}: joints {np.flatnonzero(labelled)[distance <= 40]}"


def test_joints_outside_the_frame_are_zeros() -> None:
    scene = _scene([_person(Segment("stand", -1.0, 3.0), 2.0, 100.0)])  # standing astride the left edge
    frame = render_frame(scene, 0)
    labelled = frame.in_frame[0]
    assert labelled[[5, 11]].all() and not labelled[[6, 12]].any()  # facing us: their right is our left
    ann = person_annotation(1, 0, frame.keypoints[0], labelled, frame.occluded[0], frame.head_boxes[0])
    points = np.array(ann["keypoints"]).reshape(17, 3)
    assert not points[~labelled].any() and (points[labelled, 2] == 1).all()
    assert (points[labelled, 0] >= 0).all() and ann["num_keypoints"] == labelled.sum()


def test_a_person_behind_another_or_an_occluder_has_hidden_joints() -> None:
    behind = _person(Segment("stand", -1.0, 3.0, facing=0.0), W / 2, 60.0, seed=1)
    front = _person(Segment("stand", -1.0, 3.0, facing=0.0), W / 2, 100.0, seed=2)
    frame = render_frame(_scene([behind, front]), 0)
    assert frame.occluded[0, [5, 6, 11, 12]].all() and not frame.occluded[1].any()
    alone = _person(Segment("stand", -1.0, 3.0), W / 2, 90.0)
    wall = Occluder("box", 0.0, 1.0, 2.0, 3.0, 0.0, (90.0, 90.0, 90.0), (10.0, 10.0, 10.0))
    hidden = render_frame(_scene([alone], (wall,)), 0)
    assert hidden.occluded[0, hidden.in_frame[0]].all()


def test_fast_motion_with_an_open_shutter_blurs_and_is_flagged() -> None:
    runner = [_person(Segment("run", -1.0, 3.0, speed=5.0, heading=math.pi / 2), W / 2, 100.0)]
    sharp, blurred = render_frame(_scene(runner), 3), render_frame(_scene(runner, exposure=1.0), 3)
    assert sharp.streak_px == 0.0 and blurred.streak_px >= BLUR_FLAG_PX
    assert np.array_equal(sharp.keypoints, blurred.keypoints)
    edges = lambda image: cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var()  # noqa: E731
    assert edges(blurred.image) < edges(sharp.image)


def test_defocus_softens_the_frame_by_its_recorded_strength_and_is_flagged() -> None:
    walker = [_person(Segment("walk", -1.0, 3.0, speed=1.0, heading=math.pi / 2), W / 2, 100.0)]
    sigma = np.zeros(8)
    sigma[3], sigma[4] = 0.5, 3.0
    frames = [render_frame(_scene(walker, defocus=sigma), k) for k in (2, 3, 4)]
    assert [f.defocus_px for f in frames] == [0.0, 0.5, 3.0]
    assert [f.blurred for f in frames] == [False, False, True]  # 0.5 px is below DEFOCUS_FLAG_PX
    sharp = render_frame(_scene(walker), 4)
    assert np.array_equal(sharp.keypoints, frames[2].keypoints)  # labels do not move
    edges = lambda image: cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var()  # noqa: E731
    assert edges(frames[2].image) < 0.5 * edges(sharp.image)


def test_focus_pulls_are_smooth_runs_of_bounded_strength_in_some_videos() -> None:
    spec = SceneSpec(96, 64, FPS, 40, 1, 1)
    pulls = [sample_scene(np.random.default_rng([3, k]), spec).defocus_px for k in range(60)]
    with_pull = [p for p in pulls if p is not None and p.any()]
    assert 10 <= len(with_pull) <= 40  # about 40 % of the videos
    for sigma in with_pull:
        assert sigma.max() <= DEFOCUS_MAX_PX[1] and sigma.min() >= 0.0
        assert np.abs(np.diff(sigma)).max() <= DEFOCUS_MAX_PX[1]  # a bump, not noise
        assert 0 < (sigma > 0).sum() < len(sigma)


def test_bones_keep_their_length_and_joints_move_smoothly() -> None:
    person = _person(Segment("run", -1.0, 3.0, speed=4.0, heading=math.pi / 2), W / 2, 100.0)
    bones = [(5, 7), (7, 9), (11, 13), (13, 15), (6, 8), (8, 10), (12, 14), (14, 16)]
    lengths, previous = [], None
    for t in np.arange(0.0, 1.0, 1 / FPS):
        points = person_points(person, float(t))
        lengths.append([np.linalg.norm(points[a] - points[b]) for a, b in bones])
        if previous is not None:  # 4 m/s at 25 fps: 16 cm of travel plus the limb swing
            assert np.linalg.norm(points[:17] - previous, axis=1).max() < 0.5
        previous = points[:17]
    assert np.ptp(np.array(lengths), axis=0).max() < 1e-9
    standing = body_points(BodyShape(height=1.7), np.zeros(20))
    assert standing[[15, 16], 1].min() == pytest.approx(0.04 * 1.7)  # ankles at ankle height


def test_cli_writes_the_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["synth", "--out", str(tmp_path), "--videos", "2", "--frames", "3", "--size", "64x48"]
    assert main([*argv, "--persons", "2", "--seed", "3", "--split", "val", "--fps", "10"]) == 0
    assert "wrote 2 videos (6 frames" in capsys.readouterr().out
    for seq in ("synth_300000", "synth_300001"):
        assert (
            json.loads((tmp_path / "annotations" / "val" / f"{seq}.json").read_text())["images"][2]["nframes"]
            == 3
        )
        assert cv2.imread(str(tmp_path / "images" / "val" / seq / "000002.jpg")).shape == (48, 64, 3)
        with av.open(str(tmp_path / "videos" / "val" / f"{seq}.mp4")) as container:
            assert container.streams.video[0].average_rate == 10


@pytest.mark.parametrize(
    "bad",
    [
        ["--videos", "-1"],
        ["--videos", "2", "--frames", "0"],
        ["--videos", "2", "--size", "320x"],
        ["--videos", "2", "--size", "31x240"],
        ["--videos", "2", "--persons", "3-1"],
        ["--videos", "2", "--seed", "-2"],
        ["--videos", "2", "--fps", "0"],
    ],
)
def test_bad_arguments_exit_with_one_line(
    bad: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["synth", "--out", str(tmp_path / "out"), *bad]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tdmi: error: --") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
