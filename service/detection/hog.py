"""OpenCV's built-in HOG + linear SVM people detector (Dalal & Triggs): the detector that needs no file.

The detector slides a 64x128 window in which a person stands about 96 px tall with a 16 px
margin on every side, so it never finds anyone shorter than 96 px. The image is therefore
upscaled so that ``min_person_height`` becomes 96 px, and each window is shrunk by its margins
to the person's own box, the convention of the other detectors and of boxes propagated from
keypoints. Overlapping windows are merged by our NMS (not OpenCV's grouping) so that every box
keeps a score. Scores are the logistic of the SVM margin: ordered, but not probabilities.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from tdmi.service.detection.base import Detections, checked_image, nms

__all__ = ["HogPeopleDetector"]

_WINDOW_W, _WINDOW_H = 64, 128
_MARGIN = 16  # px of background around the person in the training windows
_PERSON_H = _WINDOW_H - 2 * _MARGIN


class HogPeopleDetector:
    """People of at least ``min_person_height`` pixels in RGB images. Slow: 0.35-0.75 s for a
    768x576 frame upscaled 1.6x on a shared 2-core CPU, so run it every few frames and
    propagate boxes in between."""

    DEFAULT_SCORE_THRESHOLD = 0.6  # SVM margin 0.4: drops most lone windows on background

    def __init__(
        self,
        min_person_height: float = 64.0,
        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
        nms_iou: float = 0.3,
        pyramid_scale: float = 1.05,
    ):
        if min_person_height <= 0:
            raise ValueError(f"min_person_height must be > 0 pixels, got {min_person_height}")
        if not 0.0 < score_threshold < 1.0:
            raise ValueError(f"HOG score_threshold must be in (0, 1), got {score_threshold}")
        if pyramid_scale <= 1.0:
            raise ValueError(f"pyramid_scale must be > 1, got {pyramid_scale}")
        self.upscale = max(1.0, _PERSON_H / min_person_height)
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        self.pyramid_scale = pyramid_scale
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(np.asarray(cv2.HOGDescriptor.getDefaultPeopleDetector(), dtype=np.float32))

    def detect(self, image_rgb: np.ndarray) -> Detections:
        image = checked_image(image_rgb)
        if self.upscale > 1.0:
            image = cv2.resize(image, None, fx=self.upscale, fy=self.upscale, interpolation=cv2.INTER_LINEAR)
        margin_threshold = math.log(self.score_threshold / (1.0 - self.score_threshold))
        windows, margins = self._hog.detectMultiScale(
            image,
            hitThreshold=margin_threshold,
            winStride=(8, 8),
            padding=(8, 8),
            scale=self.pyramid_scale,
            groupThreshold=0,
        )
        if len(windows) == 0:
            return Detections.empty()
        x, y, w, h = (np.asarray(windows, dtype=np.float64) / self.upscale).T
        boxes = np.column_stack(
            [
                x + w * _MARGIN / _WINDOW_W,
                y + h * _MARGIN / _WINDOW_H,
                x + w * (1 - _MARGIN / _WINDOW_W),
                y + h * (1 - _MARGIN / _WINDOW_H),
            ]
        )
        height, width = image_rgb.shape[:2]
        boxes = np.clip(boxes, 0, [width, height, width, height])
        scores = 1.0 / (1.0 + np.exp(-np.asarray(margins, dtype=np.float64).reshape(-1)))
        keep = nms(boxes, scores, self.nms_iou)
        return Detections(boxes[keep], scores[keep])
