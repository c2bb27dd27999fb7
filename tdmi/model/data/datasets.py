"""Torch datasets of person crops: PoseTrack clips for TDMI, COCO single images for HRNet.

One sample is one person in one (key) frame::

    inputs         float32 (T, 3, H, W) clip, key frame at index radius; (3, H, W) single-frame
    target         float32 (J, H/4, W/4) Gaussian heatmaps
    target_weight  float32 (J,) 0 for unlabelled, unevaluated or out-of-crop joints
    meta           index, image_id, sequence, frame (key frame's position in its video),
                   box (4,) xyxy, box_score, track_id (-1 if none), affine (2, 3) image -> input
                   pixels, joints (J, 3) image x, y, v (zeros for a detection)

Training takes every annotated person with a labelled joint; evaluation takes the same people
(``boxes="gt"``, score 1) or every detection above the threshold, in labelled frames. Missing
neighbours of a key frame are filled by ``clip_indices`` (the key frame stands in), exactly as
the service does.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from tdmi.model.codec import gaussian_targets
from tdmi.model.data.clips import clip_indices
from tdmi.model.data.coco import load_coco_keypoints
from tdmi.model.data.detections import DEFAULT_SCORE_THRESHOLD, read_detections
from tdmi.model.data.posetrack import NUM_KEYPOINTS, Frame, Person, Sequence, load_sequences
from tdmi.model.data.transforms import (
    AugmentConfig,
    choose_crop,
    clip_affine,
    crop_keypoints,
    sample_augmentation,
    warp_clip,
)
from tdmi.model.geometry import box_to_crop
from tdmi.model.inputs import normalize
from tdmi.model.joints import COCO_17, POSETRACK_17, JointLayout

__all__ = ["HEATMAP_STRIDE", "CocoKeypoints", "ImageCache", "PersonCrops", "PoseTrackClips", "default_sigma"]

HEATMAP_STRIDE = 4
_NO_JOINTS = np.zeros((NUM_KEYPOINTS, 3), np.float32)  # a detection's: no target, weights 0
Boxes = Literal["gt"] | Path | str


def default_sigma(heatmap_width: int) -> float:
    """The papers' Gaussian width scaled to the heatmap: 2 at width 48, 3 at width 72."""
    return 2.0 * heatmap_width / 48


class ImageCache:
    """A few decoded frames (BGR uint8), least recently used out: neighbouring clips share frames.

    Each DataLoader worker holds its own copy of the dataset, hence its own cache.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._images: OrderedDict[Path, np.ndarray] = OrderedDict()

    def read(self, path: Path) -> np.ndarray:
        image = self._images.get(path)
        if image is not None:
            self._images.move_to_end(path)
            return image
        if not path.is_file():
            raise FileNotFoundError(f"image not found: {path}")
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"cannot decode image: {path}")
        if self.capacity > 0:
            self._images[path] = image
            if len(self._images) > self.capacity:
                self._images.popitem(last=False)
        return image


@dataclass(frozen=True, eq=False)
class _Sample:
    video: int  # index into PersonCrops.videos
    frame: int  # key frame's position in that video
    box: np.ndarray  # (4,) xyxy
    score: float
    person: Person | None  # None for a detection


class PersonCrops(Dataset):
    """Shared machinery: sample selection, clip reading, augmentation, warp and targets.

    ``videos`` are (name, frames) pairs; a COCO image is a one-frame video with an empty name.
    """

    def __init__(
        self,
        root: Path | str,
        videos: list[tuple[str, tuple[Frame, ...]]],
        *,
        input_size: tuple[int, int],
        radius: int | None,
        layout: JointLayout,
        train: bool,
        augment: AugmentConfig | None,
        boxes: Boxes,
        score_threshold: float,
        sigma: float | None,
        labelled_only: bool,
        cache_size: int,
        static: bool = False,
    ) -> None:
        h, w = input_size
        if h <= 0 or w <= 0 or h % HEATMAP_STRIDE or w % HEATMAP_STRIDE:
            raise ValueError(f"input_size (h, w) must be positive multiples of 4, got {input_size}")
        if radius is not None and radius < 0:
            raise ValueError(f"radius must be >= 0 or None, got {radius}")
        if layout.num_joints != NUM_KEYPOINTS:
            raise ValueError(f"layout {layout.name} has {layout.num_joints} joints; the annotations have 17")
        if augment is not None and not train:
            raise ValueError("augment is for training only (train=True)")
        if train and boxes != "gt":
            raise ValueError("training crops come from the annotations: use boxes='gt'")
        self.root = Path(root)
        self.videos = videos
        self.input_size = (h, w)
        self.heatmap_size = (h // HEATMAP_STRIDE, w // HEATMAP_STRIDE)
        self.radius = radius
        self.static = static  # every clip is its key frame repeated: a control without motion
        self.layout = layout
        self.train = train
        self.augment = augment
        self.sigma = default_sigma(self.heatmap_size[1]) if sigma is None else float(sigma)
        self._evaluated = np.zeros(layout.num_joints, np.float32)
        self._evaluated[list(layout.evaluated)] = 1.0
        self._cache = ImageCache(cache_size)
        self.samples = self._select(boxes, score_threshold, labelled_only)

    def _select(self, boxes: Boxes, score_threshold: float, labelled_only: bool) -> list[_Sample]:
        detections = None if boxes == "gt" else read_detections(boxes, score_threshold)
        samples = []
        for v, (_, frames) in enumerate(self.videos):
            for t, frame in enumerate(frames):
                if labelled_only and not frame.is_labeled:
                    continue
                if detections is None:
                    samples += [
                        _Sample(v, t, p.box, 1.0, p)
                        for p in frame.people
                        if p.box is not None and p.num_labelled
                    ]
                else:
                    found = detections.get(frame.image_id, [])
                    samples += [_Sample(v, t, d.box, d.score, None) for d in found]
        return samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        name, frames = self.videos[sample.video]
        key = sample.frame
        if self.radius is None:
            order = [key]
        elif self.static:
            order = [key] * (2 * self.radius + 1)
        else:
            order = clip_indices(key, len(frames), self.radius)
        images = [self._cache.read(self.root / frames[t].file_name) for t in order]
        joints = _NO_JOINTS if sample.person is None else sample.person.keypoints
        h, w = self.input_size
        crop, augmentation = box_to_crop(sample.box, w / h), None
        if self.augment is not None:
            # drawn from torch's generator, which DataLoader seeds differently in every worker
            rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
            crop = choose_crop(sample.box, joints, self.layout, w / h, self.augment, rng)
            augmentation = sample_augmentation(self.augment, rng)
        image_width = images[len(order) // 2].shape[1]
        affine = clip_affine(crop, self.input_size, image_width, augmentation)
        clip = warp_clip(images, affine, self.input_size)[..., ::-1]  # BGR -> RGB
        inputs = normalize(torch.from_numpy(np.ascontiguousarray(clip)).permute(0, 3, 1, 2))
        flipped = augmentation is not None and augmentation.flip
        in_crop = crop_keypoints(joints, affine, flipped, self.layout)
        labelled = in_crop[:, 2] * self._evaluated  # unevaluated joints get neither target nor weight
        target, weight = gaussian_targets(
            in_crop[:, :2] / HEATMAP_STRIDE, labelled, self.heatmap_size[::-1], self.sigma
        )
        return {
            "inputs": inputs[0] if self.radius is None else inputs,
            "target": torch.from_numpy(target),
            "target_weight": torch.from_numpy(weight),
            "meta": {
                "index": index,
                "image_id": frames[key].image_id,
                "sequence": name,
                "frame": key,
                "box": torch.from_numpy(np.asarray(sample.box, np.float32)),
                "box_score": torch.tensor(sample.score, dtype=torch.float32),
                "track_id": sample.person.track_id if sample.person is not None else -1,
                "affine": torch.from_numpy(affine.astype(np.float32)),
                "joints": torch.from_numpy(joints.astype(np.float32)),
            },
        }


class PoseTrackClips(PersonCrops):
    """PoseTrack 2017 (converted) / 2018 / 21 clips of ``2 * radius + 1`` frames (radius None: one).

    ``annotations`` is a directory of per-video JSON files whose ``file_name`` is relative to
    ``root``; ``sequences`` keeps them so predictions can be written back per video.
    """

    def __init__(
        self,
        root: Path | str,
        annotations: Path | str,
        input_size: tuple[int, int] = (384, 288),
        radius: int | None = 2,
        layout: JointLayout = POSETRACK_17,
        train: bool = False,
        augment: AugmentConfig | None = None,
        boxes: Boxes = "gt",
        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
        sigma: float | None = None,
        labelled_only: bool = True,
        cache_size: int = 16,
        static: bool = False,
    ) -> None:
        self.sequences: list[Sequence] = load_sequences(annotations)
        super().__init__(
            root,
            [(seq.name, seq.images) for seq in self.sequences],
            input_size=input_size,
            radius=radius,
            layout=layout,
            train=train,
            augment=augment,
            boxes=boxes,
            score_threshold=score_threshold,
            sigma=sigma,
            labelled_only=labelled_only,
            cache_size=cache_size,
            static=static,
        )


class CocoKeypoints(PersonCrops):
    """COCO person keypoints: single-image samples (``inputs`` (3, H, W)), sequence "" and frame 0.

    ``annotations`` is a ``person_keypoints_*.json`` whose ``file_name`` is relative to ``root``;
    ``images`` keeps its images in file order.
    """

    def __init__(
        self,
        root: Path | str,
        annotations: Path | str,
        input_size: tuple[int, int] = (256, 192),
        layout: JointLayout = COCO_17,
        train: bool = False,
        augment: AugmentConfig | None = None,
        boxes: Boxes = "gt",
        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
        sigma: float | None = None,
        cache_size: int = 0,
    ) -> None:
        self.images: list[Frame] = load_coco_keypoints(annotations)
        super().__init__(
            root,
            [("", (image,)) for image in self.images],
            input_size=input_size,
            radius=None,
            layout=layout,
            train=train,
            augment=augment,
            boxes=boxes,
            score_threshold=score_threshold,
            sigma=sigma,
            labelled_only=True,
            cache_size=cache_size,
        )
