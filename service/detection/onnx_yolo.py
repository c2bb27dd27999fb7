"""A YOLO-family person detector exported to ONNX, run with ONNX Runtime.

The image is letterboxed to the model's input size (kept ratio, grey 114 padding, RGB, /255,
NCHW float32); the input size is read from the model, or 640 when its height and width are
dynamic. The first output is decoded in one of the three layouts common exports produce,
chosen from its shape when the model is loaded:

* ``yolov5`` (YOLOv5, YOLOv7, other anchor-based heads): ``(1, N, 5 + C)`` rows of
  ``cx, cy, w, h, objectness, C class scores``; a person's score is objectness x class score.
* ``yolov8`` (YOLOv8, YOLOv9, YOLO11 and other anchor-free heads): ``(1, 4 + C, N)`` columns
  of ``cx, cy, w, h, C class scores``, no objectness.
* ``end2end`` (NMS inside the graph: YOLOv10, Ultralytics ``nms=True``): ``(1, N, 6)`` rows of
  ``x1, y1, x2, y2, score, class``.

``(1, N, 6)`` is also what a one-class YOLOv5 gives; it is read as ``yolov5`` only when N is
exactly its anchor count for the input size (3 anchors per cell at strides 8/16/32, or
8/16/32/64), as ``end2end`` otherwise. Boxes must be in input pixels (every layout above is);
exports that leave raw grid offsets (e.g. YOLOX without decoding), or several outputs meant to be
read together, are refused with a ValueError. Persons are class ``person_class`` (0 in COCO).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from tdmi.service.detection.base import Detections, DetectorUnavailableError, checked_image, nms

__all__ = ["Letterbox", "OnnxYoloDetector", "YoloLayout", "decode_yolo", "letterbox", "yolo_layout"]

DEFAULT_INPUT_SIZE = 640
PAD_VALUE = 114


class YoloLayout(enum.Enum):
    YOLOV5 = "yolov5"
    YOLOV8 = "yolov8"
    END2END = "end2end"


@dataclass(frozen=True)
class Letterbox:
    """How an image was placed into the model input: per-axis scale, then a shift by the padding."""

    scale_x: float
    scale_y: float
    pad_x: int
    pad_y: int

    def to_image(self, xyxy: np.ndarray) -> np.ndarray:
        """Boxes (N, 4) in model-input pixels -> boxes in the original image's pixels."""
        shift = np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y], dtype=np.float64)
        scale = np.array([self.scale_x, self.scale_y, self.scale_x, self.scale_y], dtype=np.float64)
        return (np.asarray(xyxy, dtype=np.float64) - shift) / scale


def letterbox(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
    """Resize ``image`` (H, W, 3) to fit ``size`` (height, width) keeping its ratio, centred on grey."""
    height, width = image.shape[:2]
    target_h, target_w = size
    scale = min(target_h / height, target_w / width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    pad_x, pad_y = (target_w - new_w) // 2, (target_h - new_h) // 2
    canvas = np.full((target_h, target_w, 3), PAD_VALUE, dtype=np.uint8)
    canvas[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = cv2.resize(
        image, (new_w, new_h), interpolation=cv2.INTER_LINEAR
    )
    return canvas, Letterbox(new_w / width, new_h / height, pad_x, pad_y)


def _yolov5_anchor_counts(input_size: tuple[int, int]) -> set[int]:
    height, width = input_size
    return {
        3 * sum((height // s) * (width // s) for s in strides) for strides in ((8, 16, 32), (8, 16, 32, 64))
    }


def yolo_layout(shape: Sequence[int], input_size: tuple[int, int]) -> YoloLayout:
    """The layout of an output of ``shape`` from a model of ``input_size`` (height, width)."""
    unsupported = ValueError(
        f"unsupported YOLO output shape {tuple(shape)}: expected (1, N, 5+C) (YOLOv5/v7), "
        "(1, 4+C, N) (YOLOv8/v9/11) or (1, N, 6) (end-to-end with NMS)"
    )
    if len(shape) != 3 or shape[0] != 1:
        raise unsupported
    rows, columns = shape[1], shape[2]
    if columns == 6:
        return YoloLayout.YOLOV5 if rows in _yolov5_anchor_counts(input_size) else YoloLayout.END2END
    if rows > columns >= 6:
        return YoloLayout.YOLOV5
    if columns > rows >= 5:
        return YoloLayout.YOLOV8
    raise unsupported


def _xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    half = boxes[:, 2:4] / 2
    return np.concatenate([boxes[:, :2] - half, boxes[:, :2] + half], axis=1)


def decode_yolo(
    output: np.ndarray, layout: YoloLayout, person_class: int, score_threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Person boxes (N, 4) xyxy in model-input pixels and their scores (N,), above the threshold."""
    table = np.asarray(output, dtype=np.float32)[0]
    if layout is YoloLayout.END2END:
        boxes, scores = table[:, :4], table[:, 4]
        is_person = np.rint(table[:, 5]) == person_class
    else:
        if layout is YoloLayout.YOLOV8:
            table = table.T
            first_class, objectness = 4, np.float32(1.0)
        else:
            first_class, objectness = 5, table[:, 4]
        classes = table.shape[1] - first_class
        if person_class >= classes:
            raise ValueError(f"person_class {person_class} but the model has {classes} classes")
        boxes, scores = _xywh_to_xyxy(table[:, :4]), objectness * table[:, first_class + person_class]
        is_person = np.ones(len(table), dtype=bool)
    keep = is_person & (scores >= score_threshold)
    return boxes[keep], scores[keep]


def _check_providers(requested: Sequence[str], available: Sequence[str], what: str) -> None:
    missing = [p for p in requested if p not in available]
    if missing:
        raise DetectorUnavailableError(
            f"ONNX Runtime provider(s) {', '.join(missing)} {what}; available: {', '.join(available)}"
            " (CUDAExecutionProvider needs the onnxruntime-gpu package and a visible GPU)"
        )


class OnnxYoloDetector:
    """Persons from a YOLO-family ONNX export (layouts in the module docstring)."""

    DEFAULT_SCORE_THRESHOLD = 0.3

    def __init__(
        self,
        path: Path | str,
        providers: Sequence[str] = ("CPUExecutionProvider",),
        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
        nms_iou: float = 0.45,
        person_class: int = 0,
        max_detections: int = 100,
    ):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"person detector model not found: {path}")
        if not providers:
            raise ValueError("at least one ONNX Runtime provider is needed, e.g. CPUExecutionProvider")
        if person_class < 0:
            raise ValueError(f"person_class must be >= 0, got {person_class}")
        _check_providers(providers, ort.get_available_providers(), "not available in this installation")
        try:
            self._session = ort.InferenceSession(str(path), providers=list(providers))
        except Exception as error:  # ONNX Runtime raises its own unrelated exception types
            raise ValueError(f"cannot load ONNX model {path}: {error}") from error
        # a provider that is installed but cannot start (no GPU, wrong CUDA) is dropped silently by ORT
        _check_providers(providers, self._session.get_providers(), "failed to start")
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].type != "tensor(float)":
            found = ", ".join(f"{i.name} {i.shape} {i.type}" for i in inputs)
            raise ValueError(f"{path}: expected one float32 NCHW image input, found {found}")
        self._input_name = inputs[0].name
        height, width = inputs[0].shape[2:]
        self.input_size = (
            height if isinstance(height, int) else DEFAULT_INPUT_SIZE,
            width if isinstance(width, int) else DEFAULT_INPUT_SIZE,
        )
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        self.person_class = person_class
        self.max_detections = max_detections
        # run once on a blank input: the layout is known, and a bad model fails here, not mid-stream
        output = self._run(np.full((*self.input_size, 3), PAD_VALUE, dtype=np.uint8))
        self.layout = yolo_layout(output.shape, self.input_size)
        decode_yolo(output, self.layout, person_class, score_threshold)

    def detect(self, image_rgb: np.ndarray) -> Detections:
        image = checked_image(image_rgb)
        canvas, placement = letterbox(image, self.input_size)
        boxes, scores = decode_yolo(self._run(canvas), self.layout, self.person_class, self.score_threshold)
        keep = nms(boxes, scores, self.nms_iou)[: self.max_detections]
        height, width = image.shape[:2]
        boxes = np.clip(placement.to_image(boxes[keep]), 0, [width, height, width, height])
        visible = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])  # not wholly in the padding
        return Detections(boxes[visible], scores[keep][visible])

    def _run(self, canvas: np.ndarray) -> np.ndarray:
        tensor = np.ascontiguousarray(canvas.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0
        return np.asarray(self._session.run(None, {self._input_name: tensor})[0])
