"""A person detector exported to ONNX (YOLO family, YOLOX, MMDeploy), run with ONNX Runtime.

The image is letterboxed to the model's input size (kept ratio, grey 114 padding) in the form its
family expects, and the outputs are decoded in one of the layouts of ``onnx_layouts``: detected
from the outputs when the model is loaded, or named (``layout=``, or ``onnx-yolox:PATH`` in a
detector spec). The input size is read from the model; where its height and width are dynamic,
it is the size the file was published for when the caller knows it (a catalogue entry's
``input_size``: ``yolox-tiny-humanart`` was trained at 416x416), else 640. Persons are class
``person_class`` (0 in COCO and in the one-class person detectors).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from tdmi.service.detection.base import Detections, DetectorUnavailableError, checked_image, nms
from tdmi.service.detection.onnx_layouts import DetectorLayout, InputFormat, decode_outputs, detect_layout

__all__ = ["Letterbox", "OnnxYoloDetector", "letterbox"]

log = logging.getLogger("tdmi.service")

DEFAULT_INPUT_SIZE = 640
PAD_VALUE = 114


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


def letterbox(image: np.ndarray, size: tuple[int, int], centred: bool = True) -> tuple[np.ndarray, Letterbox]:
    """Resize ``image`` (H, W, 3) to fit ``size`` (height, width) keeping its ratio, on grey: centred
    (Ultralytics, sizes rounded) or at the top left (YOLOX and MMDetection, sizes truncated)."""
    height, width = image.shape[:2]
    target_h, target_w = size
    scale = min(target_h / height, target_w / width)
    to_int = round if centred else math.floor
    new_w, new_h = max(1, to_int(width * scale)), max(1, to_int(height * scale))
    pad_x, pad_y = ((target_w - new_w) // 2, (target_h - new_h) // 2) if centred else (0, 0)
    canvas = np.full((target_h, target_w, 3), PAD_VALUE, dtype=np.uint8)
    canvas[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = cv2.resize(
        image, (new_w, new_h), interpolation=cv2.INTER_LINEAR
    )
    return canvas, Letterbox(new_w / width, new_h / height, pad_x, pad_y)


def model_input(canvas_rgb: np.ndarray, form: InputFormat) -> np.ndarray:
    """The letterboxed RGB canvas as the (1, 3, H, W) float32 tensor a model of ``form`` reads."""
    pixels = canvas_rgb[..., ::-1] if form.bgr else canvas_rgb
    mean, std = np.array(form.mean, np.float32), np.array(form.std, np.float32)
    normalised = (pixels.astype(np.float32) - mean) / std
    return np.ascontiguousarray(normalised.transpose(2, 0, 1)[None], dtype=np.float32)


def _check_providers(requested: Sequence[str], available: Sequence[str], what: str) -> None:
    missing = [p for p in requested if p not in available]
    if missing:
        raise DetectorUnavailableError(
            f"ONNX Runtime provider(s) {', '.join(missing)} {what}; available: {', '.join(available)}"
            " (CUDAExecutionProvider needs the onnxruntime-gpu package and a visible GPU)"
        )


class OnnxYoloDetector:
    """Persons from an ONNX detector export; ``layout`` None detects it from the outputs."""

    DEFAULT_SCORE_THRESHOLD = 0.3
    LOW_SCORE_THRESHOLD = 0.1  # ByteTrack's floor for the boxes of its second association

    def __init__(
        self,
        path: Path | str,
        providers: Sequence[str] = ("CPUExecutionProvider",),
        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
        nms_iou: float = 0.45,
        person_class: int = 0,
        max_detections: int = 100,
        layout: DetectorLayout | str | None = None,
        input_size: tuple[int, int] | None = None,
        low_score_threshold: float | None = None,
    ):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"person detector model not found: {path}")
        if not providers:
            raise ValueError("at least one ONNX Runtime provider is needed, e.g. CPUExecutionProvider")
        if person_class < 0:
            raise ValueError(f"person_class must be >= 0, got {person_class}")
        named = None if layout is None else _layout_named(layout)
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
        self.input_size = _run_size(inputs[0].shape[2:], input_size)
        if input_size is not None and self.input_size != input_size:
            log.warning(
                "person detector %s takes %dx%d, not the %dx%d it was listed with: it runs at its own",
                path.name,
                *self.input_size,
                *input_size,
            )
        self.score_threshold = score_threshold
        self.low_score_threshold = score_threshold if low_score_threshold is None else low_score_threshold
        if not 0.0 <= self.low_score_threshold <= score_threshold:
            raise ValueError(
                f"low_score_threshold must be in [0, {score_threshold}], got {low_score_threshold}"
            )
        self.nms_iou = nms_iou
        self.person_class = person_class
        self.max_detections = max_detections
        # run once on a blank input: the layout is known, and a bad model fails here, not mid-stream
        outputs = self._run(np.zeros((1, 3, *self.input_size), dtype=np.float32))
        self.layout = named or detect_layout([o.shape for o in outputs], self.input_size)
        decode_outputs(outputs, self.layout, self.input_size, person_class, score_threshold)

    def detect(self, image_rgb: np.ndarray) -> Detections:
        image = checked_image(image_rgb)
        canvas, placement = letterbox(image, self.input_size, self.layout.input_format.centred)
        boxes, scores = decode_outputs(
            self._run(model_input(canvas, self.layout.input_format)),
            self.layout,
            self.input_size,
            self.person_class,
            self.low_score_threshold,
        )
        keep = nms(boxes, scores, self.nms_iou)[: self.max_detections]
        height, width = image.shape[:2]
        boxes = np.clip(placement.to_image(boxes[keep]), 0, [width, height, width, height])
        visible = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])  # not wholly in the padding
        kept = scores[keep][visible]
        return Detections(boxes[visible], kept, kept >= self.score_threshold)

    def _run(self, tensor: np.ndarray) -> list[np.ndarray]:
        outputs = self._session.run(None, {self._input_name: tensor})
        return [np.asarray(output) for output in outputs]


def _run_size(model_hw: Sequence[int | str | None], wanted: tuple[int, int] | None) -> tuple[int, int]:
    """Each axis the model fixes keeps its size; a dynamic one takes ``wanted``'s, else 640."""
    fallback = wanted or (DEFAULT_INPUT_SIZE, DEFAULT_INPUT_SIZE)
    height, width = (
        size if isinstance(size, int) else default for size, default in zip(model_hw, fallback, strict=True)
    )
    return height, width


def _layout_named(layout: DetectorLayout | str) -> DetectorLayout:
    try:
        return DetectorLayout(layout)
    except ValueError:
        known = ", ".join(item.value for item in DetectorLayout)
        raise ValueError(f"unknown detector layout {layout!r}; known: {known}") from None
