"""Write a small multi-frame PoseTrack case that exercises poseval's tracking (MOT) rules.

The files under ``tracking/gt`` and ``tracking/pred`` were made (from the repository root) with

    python tests/data/poseval_reference/make_tracking_case.py --seed 24 \
        --out tests/data/poseval_reference/tracking

and ``tracking/out`` holds what poseval printed and saved for them (see tests/data/SOURCES.md).
Everything is generated: people with persistent track ids, missing joints (x = y = v = 0),
joints with v = 0 but a position, people without any joint, unlabelled frames, ignore regions
(also self-intersecting ones, points on their edges), missed and spurious predictions, track-id
switches, frames without predictions, tied scores and a file without scores.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

KEYPOINTS = (
    "nose", "head_bottom", "head_top", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
    "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
CATEGORIES = [{"supercategory": "person", "id": 1, "name": "person", "keypoints": list(KEYPOINTS)}]
EARS = (3, 4)


def _image(seq_number: int, frame: int, regions: list[list[list[float]]] | None) -> dict[str, Any]:
    folder = f"{seq_number:06d}_mpii_test"
    image: dict[str, Any] = {
        "file_name": f"images/val/{folder}/{frame:06d}.jpg",
        "id": 10000000000 + seq_number * 10000 + frame,
        "frame_id": 10000000000 + seq_number * 10000 + frame,
        "vid_id": f"{seq_number:06d}",
        "is_labeled": True,
    }
    if regions is not None:
        image["ignore_regions_x"] = [[p[0] for p in r] for r in regions]
        image["ignore_regions_y"] = [[p[1] for p in r] for r in regions]
    return image


def _pose(rng: np.random.Generator, centre: np.ndarray, scale: float) -> np.ndarray:
    offsets = rng.normal(0, 1, (17, 2)) * scale
    return centre + offsets


def _regions(rng: np.random.Generator, centres: list[np.ndarray]) -> list[list[list[float]]] | None:
    kind = rng.integers(0, 5)
    if kind == 0:
        return None
    if kind == 1:
        return []
    regions = []
    for _ in range(rng.integers(1, 3)):
        c = centres[rng.integers(len(centres))] if centres else np.array([300.0, 300.0])
        x, y = np.round(c + rng.normal(0, 30, 2))
        w, h = rng.integers(20, 80, 2)
        if rng.random() < 0.3:  # a bow tie: self-intersecting
            regions.append([[x, y], [x + w, y + h], [x + w, y], [x, y + h]])
        else:
            regions.append([[x, y], [x + w, y], [x + w, y + h], [x, y + h]])
    return [[[float(a), float(b)] for a, b in r] for r in regions]


def _annotation(
    image: dict[str, Any], points: np.ndarray, flags: np.ndarray, track_id: int, extra: dict[str, Any]
) -> dict[str, Any]:
    keypoints = []
    for (x, y), v in zip(points.tolist(), flags.tolist()):
        keypoints += [0, 0, 0] if v < 0 else [x, y, int(v)]
    return {"image_id": image["id"], "track_id": track_id, "category_id": 1, "keypoints": keypoints, **extra}


def make_sequence(rng: np.random.Generator, seq_number: int, num_frames: int) -> tuple[dict, dict]:
    num_people = int(rng.integers(1, 5))
    centres = [rng.uniform(100, 600, 2) for _ in range(num_people)]
    velocity = [rng.normal(0, 5, 2) for _ in range(num_people)]
    heads = rng.uniform(20, 60, num_people)
    pred_ids = list(rng.permutation(40)[:num_people])  # the tracker's own numbering
    no_scores = rng.random() < 0.2
    gt_images, gt_anns, pred_images, pred_anns = [], [], [], []
    for frame in range(num_frames):
        centres = [c + v for c, v in zip(centres, velocity)]
        labelled = frame == 0 or rng.random() > 0.2
        regions = _regions(rng, centres) if labelled else None
        image = _image(seq_number, frame, regions)
        gt_images.append(image)
        pred_images.append(dict(image))
        if rng.random() < 0.3 and num_people > 1:  # the tracker swaps two ids from here on
            a, b = rng.choice(num_people, 2, replace=False)
            pred_ids[a], pred_ids[b] = pred_ids[b], pred_ids[a]
        no_pred_frame = rng.random() < 0.1
        for person in range(num_people):
            truth = _pose(rng, centres[person], heads[person])
            flags = rng.choice([-1, 0, 1, 2], 17, p=[0.15, 0.1, 0.5, 0.25])
            flags[list(EARS)] = -1
            if rng.random() < 0.1:
                flags[:] = -1  # a person without any joint
            if labelled and rng.random() > 0.1:
                x0, y0 = truth[1] - heads[person] / 2
                head_box = [float(x0), float(y0), float(heads[person]), float(heads[person] * 1.2)]
                extra = {"bbox_head": head_box, "scores": []}
                gt_anns.append(_annotation(image, truth, flags, person, extra))
            if no_pred_frame or rng.random() < 0.15:
                continue
            noise = heads[person] * (0.1 if rng.random() < 0.7 else 0.6)
            guess = truth + rng.normal(0, noise, truth.shape)
            if regions and rng.random() < 0.3:  # a point exactly on an ignore region's corner
                guess[rng.integers(5, 17)] = regions[0][0]
            pred_flags = np.where(rng.random(17) < 0.1, -1, 1)
            pred_flags[list(EARS)] = -1
            scores = rng.random(17)
            if rng.random() < 0.3:
                scores = np.round(scores, 1)  # ties
            extra = {"scores": [] if no_scores else scores.round(6).tolist()}
            pred_anns.append(_annotation(image, guess, pred_flags, int(pred_ids[person]), extra))
        if rng.random() < 0.3 and not no_pred_frame:  # a spurious person
            guess = _pose(rng, rng.uniform(100, 600, 2), 30)
            extra = {"scores": [] if no_scores else rng.random(17).round(6).tolist()}
            pred_anns.append(_annotation(image, guess, np.ones(17, int), 90 + frame, extra))
    gt = {"images": gt_images, "annotations": gt_anns, "categories": CATEGORIES}
    pred = {"images": pred_images, "annotations": pred_anns, "categories": CATEGORIES}
    return gt, pred


def make_case(seed: int, num_sequences: int = 2, num_frames: int = 6) -> dict[str, tuple[dict, dict]]:
    """Sequence name -> (ground truth, predictions); every sequence has >= 2 labelled frames."""
    rng = np.random.default_rng(seed)
    case = {}
    for s in range(num_sequences):
        while True:
            gt, pred = make_sequence(rng, s + 1, num_frames)
            labelled = {a["image_id"] for a in gt["annotations"]}
            if len(labelled) >= 2:
                break
        case[f"{s + 1:06d}_mpii_test"] = (gt, pred)
    return case


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=24)
    parser.add_argument("--sequences", type=int, default=2)
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    for kind in ("gt", "pred"):
        (args.out / kind).mkdir(parents=True, exist_ok=True)
    for name, (gt, pred) in make_case(args.seed, args.sequences, args.frames).items():
        (args.out / "gt" / f"{name}.json").write_text(json.dumps(gt))
        (args.out / "pred" / f"{name}.json").write_text(json.dumps(pred))


if __name__ == "__main__":
    main()
