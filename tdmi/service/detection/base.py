"""What every person detector gives back, the one contract they share, and the factory.

A detector is chosen by a short spec string from the settings: ``"hog"`` (OpenCV's built-in
people detector, needs no file, made for upright pedestrians), ``"onnx:/path/model.onnx"`` (an
ONNX export run with ONNX Runtime, its output layout detected), ``"onnx-LAYOUT:/path/model.onnx"``
(the layout named: ``yolov5``, ``yolov8``, ``end2end``, ``yolox``, ``mmdeploy``,
``mmdeploy-rtmdet``; see ``onnx_layouts``) or ``"none"`` (boxes come from the client, or are
propagated from keypoints). ``onnx_spec`` writes such a spec for a file whose layout is known.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from tdmi.model.tracking import box_iou

__all__ = [
    "Detections",
    "Detector",
    "DetectorUnavailableError",
    "checked_image",
    "make_detector",
    "nms",
    "onnx_spec",
]


class DetectorUnavailableError(RuntimeError):
    """The detector cannot run as configured (e.g. a requested ONNX Runtime provider is missing);
    the service reports it as not ready rather than falling back silently."""


@dataclass(frozen=True)
class Detections:
    """Person boxes of one image: ``xyxy`` float32 (N, 4) in image pixels, ``scores`` float32 (N,),
    and ``sure`` bool (N,): scored at the detector's own threshold or above. A detector built with
    ``second_pass`` also returns fainter boxes (not sure): they may keep a tracked person, never
    start a track (ByteTrack's second association). None: all sure."""

    xyxy: np.ndarray
    scores: np.ndarray
    sure: np.ndarray | None = None

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        sure = np.ones(len(scores), bool) if self.sure is None else np.asarray(self.sure, bool).reshape(-1)
        if not len(xyxy) == len(scores) == len(sure):
            raise ValueError(f"{len(xyxy)} boxes, {len(scores)} scores and {len(sure)} sure flags")
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "sure", sure)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32))

    def __len__(self) -> int:
        return len(self.scores)


TimedDetections = tuple[Detections, float]  # the answer and the detector's seconds


class Detector(Protocol):
    def detect(self, image_rgb: np.ndarray) -> Detections:
        """Person boxes in an RGB uint8 image (H, W, 3)."""
        ...


def checked_image(image: np.ndarray) -> np.ndarray:
    """The image itself if it is RGB uint8 (H, W, 3) with pixels, else a ValueError naming what is wrong."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ValueError(f"detectors take a uint8 numpy image, got {getattr(image, 'dtype', type(image))}")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"detectors take an RGB image of shape (H, W, 3), got {image.shape}")
    return image


def nms(xyxy: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression, best score first."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    overlaps = box_iou(xyxy, xyxy)
    keep: list[int] = []
    suppressed = np.zeros(len(order), dtype=bool)
    for index in order:
        if suppressed[index]:
            continue
        keep.append(int(index))
        suppressed |= overlaps[index] > iou_threshold
    return np.array(keep, dtype=np.int64)


def onnx_spec(path: Path | str, layout: str | None = None, input_size: tuple[int, int] | None = None) -> str:
    """The detector spec of an ONNX file: ``onnx:PATH``; ``onnx-LAYOUT:PATH`` when its layout is
    known; ``@HxW`` after the kind when the size it was published for is (``onnx-yolox@416x416:PATH``)."""
    kind = "onnx" if layout is None else f"onnx-{layout}"
    size = "" if input_size is None else f"@{input_size[0]}x{input_size[1]}"
    return f"{kind}{size}:{path}"


def _input_size(text: str, spec: str) -> tuple[int, int] | None:
    """``416x416`` -> (416, 416); "" -> None."""
    if not text:
        return None
    height, _, width = text.partition("x")
    if not (height.isdigit() and width.isdigit() and int(height) > 0 and int(width) > 0):
        raise ValueError(f"detector spec {spec!r}: the size after '@' is HEIGHTxWIDTH, e.g. @416x416")
    return int(height), int(width)


def make_detector(
    spec: str,
    *,
    providers: Sequence[str] = ("CPUExecutionProvider",),
    score_threshold: float | None = None,
    min_person_height: float = 64.0,
    second_pass: bool = False,
) -> Detector | None:
    """Build the detector named by ``spec``: ``"hog"``, ``"onnx:PATH"``, ``"onnx-LAYOUT:PATH"`` or ``"none"``.

    An ONNX spec may carry the input size the file was published for, ``onnx-yolox@416x416:PATH``:
    a file with dynamic height and width runs at it (else at 640); a file with a fixed size keeps
    its own. ``"none"`` gives None: the caller must then take boxes from the client or from propagation.
    ``score_threshold`` left as None keeps each detector's own default (their scores differ in
    meaning); ``providers`` applies to ONNX, ``min_person_height`` (pixels) to HOG. With
    ``second_pass`` the detector also returns boxes down to its class's ``LOW_SCORE_THRESHOLD``,
    marked not sure, for the tracker's second association.
    """
    kind, _, argument = spec.strip().partition(":")
    # imported here because both modules import this one
    if kind == "none" and not argument:
        return None
    if kind == "hog" and not argument:
        from tdmi.service.detection.hog import HogPeopleDetector

        threshold = HogPeopleDetector.DEFAULT_SCORE_THRESHOLD if score_threshold is None else score_threshold
        low = min(threshold, HogPeopleDetector.LOW_SCORE_THRESHOLD) if second_pass else None
        return HogPeopleDetector(
            min_person_height=min_person_height, score_threshold=threshold, low_score_threshold=low
        )
    kind, _, size = kind.partition("@")
    if kind == "onnx" or kind.startswith("onnx-"):
        if not argument:
            raise ValueError(
                f"detector spec {kind + ':'!r} needs a model path, e.g. '{kind}:/models/yolox_s.onnx'"
            )
        from tdmi.service.detection.onnx_yolo import OnnxYoloDetector

        threshold = OnnxYoloDetector.DEFAULT_SCORE_THRESHOLD if score_threshold is None else score_threshold
        layout = kind.removeprefix("onnx-") if kind != "onnx" else None
        return OnnxYoloDetector(
            Path(argument),
            providers=providers,
            score_threshold=threshold,
            low_score_threshold=min(threshold, OnnxYoloDetector.LOW_SCORE_THRESHOLD) if second_pass else None,
            layout=layout,
            input_size=_input_size(size, spec),
        )
    raise ValueError(
        f"unknown detector spec {spec!r}; use 'hog', 'onnx:/path/model.onnx', "
        "'onnx-LAYOUT:/path/model.onnx' or 'none'"
    )
