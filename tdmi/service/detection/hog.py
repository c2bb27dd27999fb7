"""OpenCV's built-in HOG + linear SVM people detector (Dalal & Triggs): the detector that needs no file.

Made for upright pedestrians seen from standing height (it was trained on INRIA's walking
people): it misses people who sit, bend, lie, jump or are seen from above, and may box upright
furniture and door frames. Use an ONNX detector for anything else.

The detector slides a 64x128 window in which a person stands 96 px tall with a 16 px margin on
every side, over a pyramid of the image. It runs in two passes, each at a scale that suits the frame:

* most people: the frame resized so that the smallest person looked for becomes 96 px tall, that
  is ``min_person_height`` pixels, or ``min_person_fraction`` of the frame's height when that is
  more (large frames are scaled down and stay fast; small ones up, at most ``MAX_UPSCALE``);
* close people (taller than ``CLOSE_FRACTION`` of the frame, who would not fit a window with its
  margins): a small copy of the frame, with a border of replicated edge pixels a sixth of its
  height above and below (and at the sides of narrow frames).

A pass whose image is still smaller than the window is skipped before OpenCV is called: its
``detectMultiScale`` crashes the process on such images. Windows are shrunk by their margins to
the person's own box, the convention of the other detectors and of boxes propagated from
keypoints. Overlapping windows of both passes are merged by our NMS (not OpenCV's grouping) so
that every box keeps a score. Scores are the logistic of the SVM margin: ordered, not probabilities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from tdmi.service.detection.base import Detections, checked_image, nms

__all__ = ["HogPeopleDetector", "HogPlacement"]

_WINDOW_W, _WINDOW_H = 64, 128
_MARGIN = 16  # px of background around the person in the training windows
_PERSON_H = _WINDOW_H - 2 * _MARGIN
_STRIDE = 8  # px between windows
MAX_UPSCALE = 4.0
CLOSE_FRACTION = 0.7


@dataclass(frozen=True)
class HogPlacement:
    """How one pass resizes the frame (``scale``, to ``height`` x ``width``) and borders it."""

    scale: float
    height: int
    width: int
    pad_x: int
    pad_y: int

    @classmethod
    def for_frame(cls, height: int, width: int, person_height: float, border: bool) -> HogPlacement:
        """The placement that makes a person of ``person_height`` pixels 96 px tall; with a
        ``border``, a person as tall as the frame gets room for the window's margins."""
        scale = min(MAX_UPSCALE, _PERSON_H / person_height)
        new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
        pad_x, pad_y = (max(0.0, new_h / 3 - new_w / 2), new_h / 6) if border else (0.0, 0.0)
        # whole window strides, so that the windows sample the frame as they would without the border
        return cls(
            scale, new_h, new_w, _STRIDE * math.ceil(pad_x / _STRIDE), _STRIDE * math.ceil(pad_y / _STRIDE)
        )

    @property
    def fits_window(self) -> bool:
        """Whether the bordered image holds at least one 64x128 window (OpenCV crashes otherwise)."""
        return self.height + 2 * self.pad_y >= _WINDOW_H and self.width + 2 * self.pad_x >= _WINDOW_W


class HogPeopleDetector:
    """Upright people in RGB images (see the module docstring for the scale). Slow: about 0.5 s for
    a 768x576 frame on a shared 2-core CPU, so run it every few frames and propagate boxes between."""

    DEFAULT_SCORE_THRESHOLD = 0.6  # SVM margin 0.4: drops most lone windows on background
    LOW_SCORE_THRESHOLD = 0.5  # SVM margin 0, its own boundary: faint boxes for the second association
    DEFAULT_MIN_PERSON_FRACTION = 0.1

    def __init__(
        self,
        min_person_height: float = 64.0,
        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
        nms_iou: float = 0.3,
        pyramid_scale: float = 1.05,
        min_person_fraction: float = DEFAULT_MIN_PERSON_FRACTION,
        low_score_threshold: float | None = None,
    ):
        if min_person_height <= 0:
            raise ValueError(f"min_person_height must be > 0 pixels, got {min_person_height}")
        if not 0.0 <= min_person_fraction < 1.0:
            raise ValueError(f"min_person_fraction must be in [0, 1), got {min_person_fraction}")
        low = score_threshold if low_score_threshold is None else low_score_threshold
        if not 0.0 < low <= score_threshold < 1.0:
            raise ValueError(
                f"HOG thresholds must satisfy 0 < low_score_threshold <= score_threshold < 1, got "
                f"{low_score_threshold} and {score_threshold}"
            )
        if pyramid_scale <= 1.0:
            raise ValueError(f"pyramid_scale must be > 1, got {pyramid_scale}")
        self.min_person_height = min_person_height
        self.min_person_fraction = min_person_fraction
        self.score_threshold = score_threshold
        self.low_score_threshold = low
        self.nms_iou = nms_iou
        self.pyramid_scale = pyramid_scale
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(np.asarray(cv2.HOGDescriptor.getDefaultPeopleDetector(), dtype=np.float32))

    def placements(self, height: int, width: int) -> tuple[HogPlacement, HogPlacement]:
        """The two passes' placements for a frame: most people, then close people."""
        smallest = max(self.min_person_height, self.min_person_fraction * height)
        return (
            HogPlacement.for_frame(height, width, smallest, border=False),
            HogPlacement.for_frame(height, width, CLOSE_FRACTION * height, border=True),
        )

    def detect(self, image_rgb: np.ndarray) -> Detections:
        image = checked_image(image_rgb)
        height, width = image.shape[:2]
        found = [self._windows(image, place) for place in self.placements(height, width) if place.fits_window]
        boxes = np.concatenate([np.zeros((0, 4))] + [b for b, _ in found])
        scores = np.concatenate([np.zeros(0)] + [s for _, s in found])
        boxes = np.clip(boxes, 0, [width, height, width, height])
        inside = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])  # not wholly in the border
        boxes, scores = boxes[inside], scores[inside]
        keep = nms(boxes, scores, self.nms_iou)
        return Detections(boxes[keep], scores[keep], scores[keep] >= self.score_threshold)

    def _windows(self, image: np.ndarray, place: HogPlacement) -> tuple[np.ndarray, np.ndarray]:
        """Person boxes in the frame's pixels (unclipped) and scores, from one pass."""
        interpolation = cv2.INTER_AREA if place.scale < 1 else cv2.INTER_LINEAR
        resized = cv2.resize(image, (place.width, place.height), interpolation=interpolation)
        if place.pad_x or place.pad_y:
            resized = cv2.copyMakeBorder(
                resized, place.pad_y, place.pad_y, place.pad_x, place.pad_x, cv2.BORDER_REPLICATE
            )
        margin_threshold = math.log(self.low_score_threshold / (1.0 - self.low_score_threshold))
        windows, margins = self._hog.detectMultiScale(
            resized,
            hitThreshold=margin_threshold,
            winStride=(_STRIDE, _STRIDE),
            padding=(8, 8),
            scale=self.pyramid_scale,
            groupThreshold=0,
        )
        x, y, w, h = np.asarray(windows, dtype=np.float64).reshape(-1, 4).T
        x, y = x - place.pad_x, y - place.pad_y
        boxes = np.column_stack(
            [
                x + w * _MARGIN / _WINDOW_W,
                y + h * _MARGIN / _WINDOW_H,
                x + w * (1 - _MARGIN / _WINDOW_W),
                y + h * (1 - _MARGIN / _WINDOW_H),
            ]
        )
        scores = 1.0 / (1.0 + np.exp(-np.asarray(margins, dtype=np.float64).reshape(-1)))
        return boxes / place.scale, scores
