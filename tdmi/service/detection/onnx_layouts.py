"""The output layouts of ONNX person detectors, the input each family expects, and their decoding.

| layout | outputs | input |
| --- | --- | --- |
| ``yolov5`` (YOLOv5/v7) | ``(1, N, 5+C)``: ``cx, cy, w, h, objectness, C scores`` | RGB / 255, centred |
| ``yolov8`` (YOLOv8/v9/11) | ``(1, 4+C, N)``: ``cx, cy, w, h, C scores`` | RGB / 255, centred |
| ``end2end`` (YOLOv10, ``nms=True``) | ``(1, N, 6)``: ``x1, y1, x2, y2, score, class`` | RGB / 255, centred |
| ``yolox`` (YOLOX's own export) | ``(1, N, 5+C)`` raw: grid offsets, log sizes | BGR 0..255, top-left |
| ``mmdeploy`` (MMDeploy YOLOX, rtmlib) | ``dets (1, N, 5)``, ``labels (1, N)`` | BGR 0..255, top-left |
| ``mmdeploy-rtmdet`` (MMDeploy RTMDet) | as ``mmdeploy`` | BGR, mean/std, top-left |

Every layout's boxes are in model-input pixels once decoded. YOLOX's released ONNX files are
exported without ``decode_in_inference``: each row is one grid cell of the strides 8, 16, 32
(8400 rows at 640x640), with ``x, y`` offsets in cells, ``w, h`` as log multiples of the stride,
and objectness and class scores already through a sigmoid. Padding is grey 114 everywhere; YOLOX
and MMDeploy place the resized image at the top left, Ultralytics in the middle.

Auto-detection from the outputs: two outputs ``(1, N, 5)`` and ``(1, N)`` are ``mmdeploy`` (RTMDet
has the same outputs but needs its normalisation, so it is only chosen by name); one table is
told apart by shape, and a ``(1, N, 5+C)`` table with one row per cell at strides 8/16/32 is read
as raw ``yolox``. Exports that decode YOLOX inside the graph, or an end-to-end model with exactly
that many rows, need their layout named.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["DetectorLayout", "InputFormat", "decode_outputs", "detect_layout", "yolox_grid"]

YOLOX_STRIDES = (8, 16, 32)


class DetectorLayout(enum.Enum):
    YOLOV5 = "yolov5"
    YOLOV8 = "yolov8"
    END2END = "end2end"
    YOLOX = "yolox"
    MMDEPLOY = "mmdeploy"
    MMDEPLOY_RTMDET = "mmdeploy-rtmdet"

    @property
    def input_format(self) -> InputFormat:
        """How the image must be prepared for a model of this family (from its publisher's code)."""
        if self in (DetectorLayout.YOLOV5, DetectorLayout.YOLOV8, DetectorLayout.END2END):
            return InputFormat(bgr=False, centred=True, mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0))
        if self is DetectorLayout.MMDEPLOY_RTMDET:  # MMDetection's RTMDet data preprocessor, BGR order
            return InputFormat(
                bgr=True, centred=False, mean=(103.53, 116.28, 123.675), std=(57.375, 57.12, 58.395)
            )
        return InputFormat(bgr=True, centred=False, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


@dataclass(frozen=True)
class InputFormat:
    """Channel order, where the letterboxed image sits, and ``(pixel - mean) / std`` per channel
    (in the model's channel order), applied after the grey padding."""

    bgr: bool
    centred: bool
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def _grid_cells(input_size: tuple[int, int], strides: Sequence[int]) -> int:
    height, width = input_size
    return sum((height // s) * (width // s) for s in strides)


def _yolov5_anchor_counts(input_size: tuple[int, int]) -> set[int]:
    return {3 * _grid_cells(input_size, strides) for strides in ((8, 16, 32), (8, 16, 32, 64))}


def _is_mmdeploy(shapes: Sequence[Sequence[int]]) -> bool:
    if len(shapes) != 2:
        return False
    dets, labels = sorted(shapes, key=len, reverse=True)
    return (
        len(dets) == 3
        and len(labels) == 2
        and dets[0] == labels[0] == 1
        and dets[2] == 5
        and dets[1] == labels[1]
    )


def detect_layout(shapes: Sequence[Sequence[int]], input_size: tuple[int, int]) -> DetectorLayout:
    """The layout of a model whose outputs have ``shapes``, for an input of ``input_size`` (height, width)."""
    if _is_mmdeploy(shapes):
        return DetectorLayout.MMDEPLOY
    shape = tuple(shapes[0]) if shapes else ()
    unsupported = ValueError(
        f"unsupported detector output shape {shape}: expected (1, N, 5+C) (YOLOv5/v7, raw YOLOX), "
        "(1, 4+C, N) (YOLOv8/v9/11), (1, N, 6) (end-to-end with NMS) or MMDeploy's dets (1, N, 5) "
        "with labels (1, N)"
    )
    if len(shape) != 3 or shape[0] != 1:
        raise unsupported
    rows, columns = shape[1], shape[2]
    if rows > columns >= 6 and rows == _grid_cells(input_size, YOLOX_STRIDES):
        return DetectorLayout.YOLOX
    if columns == 6:
        return DetectorLayout.YOLOV5 if rows in _yolov5_anchor_counts(input_size) else DetectorLayout.END2END
    if rows > columns >= 6:
        return DetectorLayout.YOLOV5
    if columns > rows >= 5:
        return DetectorLayout.YOLOV8
    raise unsupported


def yolox_grid(input_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Each row's cell (x, y) and stride, in YOLOX's order: stride by stride, then row-major."""
    cells, strides = [], []
    for stride in YOLOX_STRIDES:
        rows, columns = input_size[0] // stride, input_size[1] // stride
        ys, xs = np.mgrid[0:rows, 0:columns]
        cells.append(np.column_stack([xs.ravel(), ys.ravel()]))
        strides.append(np.full(rows * columns, stride))
    return np.concatenate(cells).astype(np.float64), np.concatenate(strides).astype(np.float64)


def _xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    half = boxes[:, 2:4] / 2
    return np.concatenate([boxes[:, :2] - half, boxes[:, :2] + half], axis=1)


def _class_scores(table: np.ndarray, first_class: int, person_class: int) -> np.ndarray:
    classes = table.shape[1] - first_class
    if person_class >= classes:
        raise ValueError(f"person_class {person_class} but the model has {classes} classes")
    return table[:, first_class + person_class]


def decode_outputs(
    outputs: Sequence[np.ndarray],
    layout: DetectorLayout,
    input_size: tuple[int, int],
    person_class: int,
    score_threshold: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Person boxes (N, 4) xyxy in model-input pixels and their scores (N,), above the threshold."""
    if layout in (DetectorLayout.MMDEPLOY, DetectorLayout.MMDEPLOY_RTMDET):
        if len(outputs) < 2:
            raise ValueError(
                f"layout {layout.value} needs two outputs (dets, labels), the model has {len(outputs)}"
            )
        dets, labels = sorted(outputs[:2], key=np.ndim, reverse=True)  # the exports differ in order
        table = np.asarray(dets, dtype=np.float64)[0]
        boxes, scores = table[:, :4], table[:, 4]
        is_person = np.asarray(labels)[0] == person_class
    else:
        boxes, scores, is_person = _decode_table(
            np.asarray(outputs[0], np.float64)[0], layout, input_size, person_class
        )
    keep = is_person & (scores >= score_threshold)
    return boxes[keep], scores[keep]


def _decode_table(
    table: np.ndarray, layout: DetectorLayout, input_size: tuple[int, int], person_class: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes, scores and which rows are persons, from the one output table of a YOLO-family model."""
    if layout is DetectorLayout.END2END:
        return table[:, :4], table[:, 4], np.rint(table[:, 5]) == person_class
    if layout is DetectorLayout.YOLOV8:
        table = table.T
        scores = _class_scores(table, 4, person_class)
    else:
        scores = table[:, 4] * _class_scores(table, 5, person_class)
    everyone = np.ones(len(table), dtype=bool)
    if layout is not DetectorLayout.YOLOX:
        return _xywh_to_xyxy(table[:, :4]), scores, everyone
    cells, strides = yolox_grid(input_size)
    if len(cells) != len(table):
        raise ValueError(
            f"raw YOLOX output has {len(table)} rows; a {input_size} input has {len(cells)} cells"
        )
    centres = (table[:, :2] + cells) * strides[:, None]
    sizes = np.exp(np.minimum(table[:, 2:4], 20.0)) * strides[:, None]  # capped: no overflow
    return _xywh_to_xyxy(np.concatenate([centres, sizes], axis=1)), scores, everyone
