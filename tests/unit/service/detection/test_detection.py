"""Person boxes: client boxes, the ONNX detector layouts (YOLO, YOLOX, MMDeploy) on real ONNX
Runtime, HOG on real frames, propagation from keypoints and the detector schedule."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from tdmi.model.tracking import PoseTracker, box_iou
from tdmi.service.config import Settings
from tdmi.service.detection import (
    Detections,
    DetectionSchedule,
    DetectorLayout,
    DetectorUnavailableError,
    HogPeopleDetector,
    InvalidBoxesError,
    OnnxYoloDetector,
    make_detector,
    nms,
    onnx_spec,
    parse_client_boxes,
)
from tdmi.service.detection.onnx_layouts import detect_layout
from tdmi.service.detection.onnx_yolo import letterbox
from tdmi.service.metrics import ServiceMetrics
from tdmi.service.streaming.boxes import SessionBoxes, clip_to_frame
from tdmi.service.streaming.factory import SessionFactory
from tdmi.service.streaming.session import StreamFrame

DATA = Path(__file__).parents[3] / "data" / "detection"

# A 128x64 (w x h) image letterboxed into a 64x64 input: scale 0.5, 16 px of padding above and below.
IMAGE_W, IMAGE_H = 128, 64


def _to_input(box_xyxy: list[float]) -> list[float]:
    x1, y1, x2, y2 = box_xyxy
    return [x1 * 0.5, y1 * 0.5 + 16, x2 * 0.5, y2 * 0.5 + 16]


def _xywh(box_xyxy: list[float]) -> list[float]:
    x1, y1, x2, y2 = box_xyxy
    return [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]


def _yolo_model(
    path: Path,
    table: np.ndarray,
    red_mean_at: np.ndarray | None = None,
    input_hw=(64, 64),
    probe_rows: int | None = None,
    labels: np.ndarray | None = None,
) -> Path:
    """An ONNX model whose output is ``table``, plus the mean of its input's first channel (R for
    RGB models, B for BGR ones) over its first ``probe_rows`` rows (all if None) wherever
    ``red_mean_at`` is 1: what a detector export would answer, with a window on its input.
    ``labels`` adds MMDeploy's second output, listed before the table."""
    mask = np.zeros_like(table) if red_mean_at is None else red_mean_at
    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, *input_hw])
    outputs = [helper.make_tensor_value_info("output0", TensorProto.FLOAT, None)]
    constants = {
        "table": table.astype(np.float32),
        "mask": mask.astype(np.float32),
        "starts": np.array([0, 0], dtype=np.int64),
        "ends": np.array([1, probe_rows or 1 << 30], dtype=np.int64),
        "axes": np.array([1, 2], dtype=np.int64),
    }
    if labels is not None:
        constants["labels_value"] = labels.astype(np.int64)
        outputs.insert(0, helper.make_tensor_value_info("labels", TensorProto.INT64, None))
    nodes = [
        helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value, name))
        for name, value in constants.items()
    ]
    nodes += [
        helper.make_node("Slice", ["images", "starts", "ends", "axes"], ["red"]),
        helper.make_node("ReduceMean", ["red"], ["red_mean"], keepdims=0),
        helper.make_node("Mul", ["mask", "red_mean"], ["window"]),
        helper.make_node("Add", ["table", "window"], ["output0"]),
    ]
    if labels is not None:
        nodes.append(helper.make_node("Identity", ["labels_value"], ["labels"]))
    graph = helper.make_graph(nodes, "detector_stub", [images], outputs)
    # IR version 8 goes with opset 17 and loads in every ONNX Runtime the project supports
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    return path


def _blank_image() -> np.ndarray:
    return np.zeros((IMAGE_H, IMAGE_W, 3), dtype=np.uint8)


# --- letterbox and layouts ---------------------------------------------------------------------


def test_letterbox_keeps_the_ratio_pads_grey_and_maps_boxes_back() -> None:
    image = np.full((IMAGE_H, IMAGE_W, 3), (200, 10, 20), dtype=np.uint8)
    canvas, placement = letterbox(image, (64, 64))
    assert canvas.shape == (64, 64, 3)
    assert (canvas[:16] == 114).all() and (canvas[48:] == 114).all()
    assert (canvas[16:48] == (200, 10, 20)).all()
    in_input = np.array([_to_input([20, 10, 60, 50])])
    np.testing.assert_allclose(placement.to_image(in_input), [[20, 10, 60, 50]])


@pytest.mark.parametrize(
    ("shapes", "input_hw", "layout"),
    [
        ([(1, 25200, 85)], (640, 640), DetectorLayout.YOLOV5),
        ([(1, 25200, 6)], (640, 640), DetectorLayout.YOLOV5),  # one-class YOLOv5: 3 x (80^2 + 40^2 + 20^2)
        ([(1, 252, 6)], (64, 64), DetectorLayout.YOLOV5),
        ([(1, 84, 8400)], (640, 640), DetectorLayout.YOLOV8),
        ([(1, 5, 8400)], (640, 640), DetectorLayout.YOLOV8),
        ([(1, 6, 8400)], (640, 640), DetectorLayout.YOLOV8),
        ([(1, 300, 6)], (640, 640), DetectorLayout.END2END),
        ([(1, 8000, 6)], (640, 640), DetectorLayout.END2END),
        ([(1, 8400, 85)], (640, 640), DetectorLayout.YOLOX),  # one row per cell: 80^2 + 40^2 + 20^2
        ([(1, 8400, 6)], (640, 640), DetectorLayout.YOLOX),  # a one-class (person) YOLOX
        ([(1, 3549, 85)], (416, 416), DetectorLayout.YOLOX),  # YOLOX-Tiny and Nano
        ([(1, 100, 5), (1, 100)], (640, 640), DetectorLayout.MMDEPLOY),
        ([(1, 100), (1, 100, 5)], (640, 640), DetectorLayout.MMDEPLOY),
    ],
)
def test_layouts_are_told_apart_by_shape(shapes, input_hw, layout) -> None:
    assert detect_layout(shapes, input_hw) is layout


@pytest.mark.parametrize(
    "shapes", [[(1, 10)], [(1, 3, 4, 5)], [(2, 300, 6)], [(1, 4, 4)], [(1, 300, 5)], [(1, 9, 5), (1, 8)], []]
)
def test_unsupported_layouts_are_refused(shapes) -> None:
    with pytest.raises(ValueError, match="unsupported detector output shape"):
        detect_layout(shapes, (640, 640))


# --- the ONNX YOLO detector on ONNX Runtime ---------------------------------------------------


def test_yolov5_layout_scores_objectness_times_class_and_suppresses_duplicates(tmp_path: Path) -> None:
    a, b = [20, 10, 60, 50], [80, 4, 110, 60]
    shifted = [22, 12, 62, 52]
    table = np.zeros((1, 10, 7))  # cx, cy, w, h, objectness, person, other
    table[0, 0] = [*_xywh(_to_input(a)), 0.9, 0.8, 0.1]  # 0.72
    table[0, 1] = [*_xywh(_to_input(shifted)), 0.9, 0.7, 0.1]  # 0.63, overlaps a: suppressed
    table[0, 2] = [*_xywh(_to_input(b)), 0.5, 0.5, 0.0]  # 0.25: under the threshold
    table[0, 3] = [*_xywh(_to_input(b)), 0.9, 0.1, 0.9]  # another class
    table[0, 4] = [*_xywh(_to_input(b)), 0.8, 0.9, 0.0]  # 0.72
    detector = OnnxYoloDetector(_yolo_model(tmp_path / "v5.onnx", table), score_threshold=0.3)
    assert detector.layout is DetectorLayout.YOLOV5 and detector.input_size == (64, 64)
    found = detector.detect(_blank_image())
    np.testing.assert_allclose(found.xyxy, [a, b], atol=1e-4)
    np.testing.assert_allclose(found.scores, [0.72, 0.72], atol=1e-6)
    assert found.xyxy.dtype == np.float32 and found.scores.dtype == np.float32


def test_yolov8_layout_has_no_objectness_and_is_transposed(tmp_path: Path) -> None:
    a, b = [0, 0, 40, 64], [100, 20, 140, 60]  # b reaches past the right edge: clipped to 128
    table = np.zeros((1, 20, 6))  # rows before the transpose: cx, cy, w, h, person, other
    table[0, 0] = [*_xywh(_to_input(a)), 0.55, 0.0]
    table[0, 1] = [*_xywh(_to_input(b)), 0.9, 0.0]
    table[0, 2] = [*_xywh(_to_input(a)), 0.2, 0.95]  # another class
    output = table.transpose(0, 2, 1)  # (1, 4 + C, N)
    detector = OnnxYoloDetector(_yolo_model(tmp_path / "v8.onnx", output))
    assert detector.layout is DetectorLayout.YOLOV8
    found = detector.detect(_blank_image())
    np.testing.assert_allclose(found.xyxy, [[100, 20, 128, 60], a], atol=1e-4)
    np.testing.assert_allclose(found.scores, [0.9, 0.55], atol=1e-6)


def test_end_to_end_layout_keeps_persons_above_the_threshold(tmp_path: Path) -> None:
    a, b = [20, 10, 60, 50], [70, 0, 100, 64]
    table = np.zeros((1, 5, 6))  # x1, y1, x2, y2, score, class
    table[0, 0] = [*_to_input(a), 0.8, 0]
    table[0, 1] = [*_to_input(b), 0.95, 2]  # another class
    table[0, 2] = [*_to_input(b), 0.1, 0]  # under the threshold
    table[0, 3] = [*_to_input(b), 0.6, 0]
    table[0, 4] = [0, 0, 10, 10, 0.99, 0]  # wholly inside the padding: no box in the image
    detector = OnnxYoloDetector(_yolo_model(tmp_path / "e2e.onnx", table))
    assert detector.layout is DetectorLayout.END2END
    found = detector.detect(_blank_image())
    np.testing.assert_allclose(found.xyxy, [a, b], atol=1e-4)
    np.testing.assert_allclose(found.scores, [0.8, 0.6], atol=1e-6)


def test_the_input_is_rgb_over_255_letterboxed_with_grey(tmp_path: Path) -> None:
    """The model reports the mean of its first input channel as a score: a red image fills the
    middle half of the input with 1.0 and the padding with 114/255; BGR order would give 0 there."""
    table = np.zeros((1, 5, 6))
    table[0, 0, :4] = _to_input([20, 10, 60, 50])
    where = np.zeros_like(table)
    where[0, 0, 4] = 1.0
    detector = OnnxYoloDetector(_yolo_model(tmp_path / "probe.onnx", table, where), score_threshold=0.01)
    red = np.zeros((IMAGE_H, IMAGE_W, 3), dtype=np.uint8)
    red[..., 0] = 255
    found = detector.detect(red)
    assert found.scores.tolist() == pytest.approx([0.5 * 1.0 + 0.5 * 114 / 255], abs=1e-5)


def test_dynamic_input_size_defaults_to_640(tmp_path: Path) -> None:
    table = np.zeros((1, 3, 6))
    table[0, 0] = [100, 180, 300, 460, 0.9, 0]  # 640 input: scale 5, 160 px of padding above
    path = _yolo_model(tmp_path / "dynamic.onnx", table, input_hw=("height", "width"))
    detector = OnnxYoloDetector(path)
    assert detector.input_size == (640, 640)
    np.testing.assert_allclose(detector.detect(_blank_image()).xyxy, [[20, 4, 60, 60]], atol=1e-4)


class _FedShapes:
    """An ONNX Runtime session that records the shape of each input it is given."""

    def __init__(self, session: ort.InferenceSession):
        self.session, self.shapes = session, []

    def run(self, names, feeds):
        self.shapes += [value.shape for value in feeds.values()]
        return self.session.run(names, feeds)


def test_a_dynamic_file_runs_at_its_published_size_and_a_fixed_one_at_its_own(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A catalogue detector's spec carries the size it was published for (yolox-tiny-humanart: 416)."""
    table = np.zeros((1, 3, 6))
    table[0, 0] = [100, 180, 300, 460, 0.9, 0]
    dynamic = _yolo_model(tmp_path / "dynamic.onnx", table, input_hw=("height", "width"))
    published = make_detector(onnx_spec(dynamic, "end2end", (416, 320)))
    assert isinstance(published, OnnxYoloDetector) and published.input_size == (416, 320)
    fed = published._session = _FedShapes(published._session)
    published.detect(_blank_image())
    assert fed.shapes == [(1, 3, 416, 320)]
    fixed = _yolo_model(tmp_path / "fixed.onnx", table)  # 64x64
    own = make_detector(onnx_spec(fixed, "end2end", (416, 416)))
    assert isinstance(own, OnnxYoloDetector) and own.input_size == (64, 64)
    fed = own._session = _FedShapes(own._session)
    own.detect(_blank_image())
    assert fed.shapes == [(1, 3, 64, 64)]
    assert "fixed.onnx takes 64x64, not the 416x416 it was listed with" in caplog.text


# YOLOX and MMDeploy place the 128x64 image at the top left of the 64x64 input: scale 0.5, no shift.
def _to_top_left_input(box_xyxy: list[float]) -> list[float]:
    return [v * 0.5 for v in box_xyxy]


def _yolox_row(box_xyxy: list[float], cell: tuple[int, int], stride: int) -> list[float]:
    """The raw YOLOX regression of a box (image pixels) from the grid cell (x, y) at ``stride``."""
    cx, cy, w, h = _xywh(_to_top_left_input(box_xyxy))
    return [
        cx / stride - cell[0],
        cy / stride - cell[1],
        float(np.log(w / stride)),
        float(np.log(h / stride)),
    ]


def _yolox_index(cell: tuple[int, int], stride: int) -> int:
    """Row of a cell in a 64x64 input's output: 8x8 cells at stride 8, then 4x4 at 16, then 2x2 at 32."""
    first, columns = {8: (0, 8), 16: (64, 4), 32: (80, 2)}[stride]
    return first + cell[1] * columns + cell[0]


def test_raw_yolox_rows_are_decoded_with_their_grid_and_stride(tmp_path: Path) -> None:
    a, b, c = [20, 10, 60, 50], [80, 4, 110, 60], [4, 2, 124, 62]
    table = np.zeros((1, 84, 7))  # 8^2 + 4^2 + 2^2 cells: dx, dy, log w, log h, objectness, person, other
    table[0, :, 2:4] = -3.0  # empty cells: small boxes with no score
    table[0, _yolox_index((2, 1), 8)] = [*_yolox_row(a, (2, 1), 8), 0.9, 0.8, 0.1]  # 0.72
    table[0, _yolox_index((3, 0), 16)] = [*_yolox_row(b, (3, 0), 16), 0.8, 0.9, 0.0]  # 0.72
    table[0, _yolox_index((1, 1), 32)] = [*_yolox_row(c, (1, 1), 32), 0.7, 0.1, 0.9]  # another class
    table[0, _yolox_index((0, 1), 32)] = [*_yolox_row(c, (0, 1), 32), 0.5, 0.5, 0.0]  # 0.25: dropped
    detector = OnnxYoloDetector(_yolo_model(tmp_path / "yolox.onnx", table))
    assert detector.layout is DetectorLayout.YOLOX
    found = detector.detect(_blank_image())
    np.testing.assert_allclose(found.xyxy, [a, b], atol=1e-3)  # float32 outputs: 1e-3 px
    np.testing.assert_allclose(found.scores, [0.72, 0.72], atol=1e-6)


def test_a_raw_yolox_row_written_by_hand() -> None:
    """Row 70 is cell (2, 1) at stride 16: centre (2.5, 1.25) cells = (40, 20) px, size 2x4 strides."""
    from tdmi.service.detection.onnx_layouts import decode_outputs

    table = np.zeros((1, 84, 6))
    table[0, 70] = [0.5, 0.25, np.log(2), np.log(4), 1.0, 0.9]
    boxes, scores = decode_outputs([table], DetectorLayout.YOLOX, (64, 64), 0, 0.5)
    np.testing.assert_allclose(boxes, [[24, -12, 56, 52]], atol=1e-9)
    np.testing.assert_allclose(scores, [0.9])


@pytest.mark.parametrize(
    ("spec_layout", "expected"),
    [
        (None, 255.0),  # YOLOX and MMDeploy YOLOX: BGR, 0..255, image at the top left
        ("mmdeploy-rtmdet", (255.0 - 103.53) / 57.375),  # RTMDet: BGR, MMDetection's mean and std
    ],
)
def test_each_family_gets_its_own_input(tmp_path: Path, spec_layout, expected) -> None:
    """The model reports the mean of input channel 0 over the top 16 rows: a blue image fills them
    with its blue channel only when placed at the top left in BGR order (centred, they would hold
    grey padding; in RGB order, red 0), and the number tells the normalisation."""
    table = np.zeros((1, 5, 5))  # MMDeploy dets: x1, y1, x2, y2, score
    table[0, 0, :4] = _to_top_left_input([20, 10, 60, 50])
    where = np.zeros_like(table)
    where[0, 0, 4] = 1.0
    path = _yolo_model(tmp_path / "probe.onnx", table, where, probe_rows=16, labels=np.zeros((1, 5)))
    detector = make_detector(onnx_spec(path, spec_layout), score_threshold=0.001)
    assert isinstance(detector, OnnxYoloDetector)
    if spec_layout is None:
        assert detector.layout is DetectorLayout.MMDEPLOY
    blue = np.zeros((IMAGE_H, IMAGE_W, 3), dtype=np.uint8)
    blue[..., 2] = 255
    found = detector.detect(blue)
    assert found.scores.tolist() == pytest.approx([expected], abs=1e-4)
    np.testing.assert_allclose(found.xyxy, [[20, 10, 60, 50]], atol=1e-3)


def test_mmdeploy_keeps_the_persons_labelled_as_such(tmp_path: Path) -> None:
    a, b = [20, 10, 60, 50], [70, 0, 100, 64]
    dets = np.zeros((1, 6, 5))
    dets[0, 0] = [*_to_top_left_input(a), 0.8]
    dets[0, 1] = [*_to_top_left_input(b), 0.95]  # label 2: another class
    dets[0, 2] = [*_to_top_left_input(b), 0.1]  # under the threshold
    dets[0, 3] = [*_to_top_left_input(b), 0.6]
    dets[0, 4] = [0, 40, 10, 60, 0.99]  # wholly inside the padding below the image
    labels = np.array([[0, 2, 0, 0, 0, 0]])
    detector = OnnxYoloDetector(_yolo_model(tmp_path / "mmdeploy.onnx", dets, labels=labels))
    assert detector.layout is DetectorLayout.MMDEPLOY
    found = detector.detect(_blank_image())
    np.testing.assert_allclose(found.xyxy, [a, b], atol=1e-4)
    np.testing.assert_allclose(found.scores, [0.8, 0.6], atol=1e-6)


def test_a_named_layout_the_outputs_do_not_fit_fails_at_load(tmp_path: Path) -> None:
    path = _yolo_model(tmp_path / "e2e.onnx", np.zeros((1, 5, 6)))
    with pytest.raises(ValueError, match="needs two outputs"):
        make_detector(f"onnx-mmdeploy:{path}")
    with pytest.raises(ValueError, match=r"raw YOLOX output has 5 rows; a \(64, 64\) input has 84 cells"):
        make_detector(f"onnx-yolox:{path}")
    with pytest.raises(ValueError, match="unknown detector layout 'yolo9'; known: yolov5, yolov8"):
        make_detector(f"onnx-yolo9:{path}")


def test_every_catalogue_detector_names_a_layout_the_detector_reads() -> None:
    from tdmi.service.weights import load_catalogue

    layouts = {e.layout for e in load_catalogue().entries.values() if e.kind == "detector"}
    assert layouts and layouts <= {layout.value for layout in DetectorLayout}, layouts


def test_a_model_with_an_unsupported_output_fails_at_load(tmp_path: Path) -> None:
    path = _yolo_model(tmp_path / "grid.onnx", np.zeros((1, 3, 8, 8)))
    with pytest.raises(ValueError, match=r"unsupported detector output shape \(1, 3, 8, 8\)"):
        OnnxYoloDetector(path)


def test_a_person_class_the_model_lacks_fails_at_load(tmp_path: Path) -> None:
    path = _yolo_model(tmp_path / "one_class.onnx", np.zeros((1, 5, 100)))
    with pytest.raises(ValueError, match="person_class 3 but the model has 1 classes"):
        OnnxYoloDetector(path, person_class=3)


def test_a_missing_provider_is_a_clear_unavailability(tmp_path: Path) -> None:
    path = _yolo_model(tmp_path / "e2e.onnx", np.zeros((1, 5, 6)))
    missing = next(p for p in ort.get_all_providers() if p not in ort.get_available_providers())
    with pytest.raises(DetectorUnavailableError, match=missing):
        OnnxYoloDetector(path, providers=[missing, "CPUExecutionProvider"])


def test_bad_model_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        OnnxYoloDetector(tmp_path / "absent.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="cannot load ONNX model"):
        OnnxYoloDetector(garbage)


def test_make_detector_reads_the_spec(tmp_path: Path) -> None:
    path = _yolo_model(tmp_path / "e2e.onnx", np.zeros((1, 5, 6)))
    assert make_detector("none") is None
    onnx_detector = make_detector(f"onnx:{path}", score_threshold=0.5)
    assert isinstance(onnx_detector, OnnxYoloDetector) and onnx_detector.score_threshold == 0.5
    hog = make_detector("hog", min_person_height=48)
    assert isinstance(hog, HogPeopleDetector) and hog.placements(480, 640)[0].scale == 2.0
    with pytest.raises(ValueError, match="needs a model path"):
        make_detector("onnx:")
    assert onnx_spec(path, "end2end", (416, 320)) == f"onnx-end2end@416x320:{path}"
    with pytest.raises(ValueError, match="HEIGHTxWIDTH"):
        make_detector(f"onnx-end2end@416:{path}")
    with pytest.raises(ValueError, match="unknown detector spec 'yolo'"):
        make_detector("yolo")


# --- HOG on real frames -----------------------------------------------------------------------

# People in the two vtest.avi frames, boxed by eye from 2-3x enlarged crops (x1, y1, x2, y2).
VTEST_PEOPLE = {
    "vtest_frame100.jpg": [
        (349, 199, 383, 275), (374, 178, 411, 257), (423, 179, 450, 258),
        (494, 148, 518, 220), (516, 152, 541, 222), (591, 153, 617, 233),
    ],
    "vtest_frame400.jpg": [(273, 200, 302, 286), (589, 139, 618, 204), (686, 300, 744, 411)],
}  # fmt: skip


@pytest.fixture(scope="module")
def hog() -> HogPeopleDetector:
    return HogPeopleDetector(min_person_height=60)


@pytest.mark.parametrize("name", sorted(VTEST_PEOPLE))
def test_hog_finds_the_pedestrians_of_a_real_frame(hog: HogPeopleDetector, name: str) -> None:
    image = np.asarray(Image.open(DATA / name).convert("RGB"))
    found = hog.detect(image)
    people = np.array(VTEST_PEOPLE[name], dtype=np.float64)
    best = box_iou(people, found.xyxy).max(axis=1)
    assert (best >= 0.5).all(), f"people missed (best IoU per person): {best.round(2)}"
    assert len(found) <= len(people) + 3  # a few false alarms at most
    heights = found.xyxy[found.scores >= 0.9, 3] - found.xyxy[found.scores >= 0.9, 1]
    assert len(heights) >= 3 and ((heights > 55) & (heights < 130)).all()


@pytest.mark.parametrize("name", sorted(VTEST_PEOPLE))
def test_a_second_pass_detector_adds_faint_boxes_and_keeps_the_sure_ones(
    hog: HogPeopleDetector, name: str
) -> None:
    image = np.asarray(Image.open(DATA / name).convert("RGB"))
    plain = hog.detect(image)
    both = HogPeopleDetector(min_person_height=60, low_score_threshold=0.5).detect(image)
    assert both.sure is not None and plain.sure is not None and plain.sure.all()
    sure = both.xyxy[both.sure]
    assert len(sure) == len(plain) and box_iou(sure, plain.xyxy).max(axis=1).min() > 0.99
    assert ((both.scores >= 0.5) & ((both.scores >= hog.score_threshold) == both.sure)).all()
    with pytest.raises(ValueError, match="low_score_threshold <= score_threshold"):
        HogPeopleDetector(low_score_threshold=0.7)


def test_hog_finds_nobody_in_a_flat_image_and_refuses_non_images(hog: HogPeopleDetector) -> None:
    assert len(hog.detect(np.full((240, 320, 3), 90, dtype=np.uint8))) == 0
    with pytest.raises(ValueError, match=r"shape \(H, W, 3\)"):
        hog.detect(np.zeros((240, 320), dtype=np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        hog.detect(np.zeros((240, 320, 3), dtype=np.float32))


def test_hog_finds_a_person_as_tall_as_the_frame(hog: HogPeopleDetector) -> None:
    """A close-up: one vtest pedestrian cropped tightly and enlarged 4x fills 93% of the frame, more
    than a 64x128 window with its margins can hold at any scale of the unbordered frame."""
    image = np.asarray(Image.open(DATA / "vtest_frame400.jpg").convert("RGB"))
    x1, y1, x2, y2 = VTEST_PEOPLE["vtest_frame400.jpg"][2]
    top, left = y1 - 4, x1 - 30
    close = cv2.resize(image[top : y2 + 4, left : x2 + 30], None, fx=4, fy=4)
    person = np.array([[x1 - left, y1 - top, x2 - left, y2 - top]], dtype=np.float64) * 4
    assert (person[0, 3] - person[0, 1]) / close.shape[0] > 0.9
    found = hog.detect(close)
    assert box_iou(person, found.xyxy).max() >= 0.5


def test_hog_scales_large_frames_down_and_small_frames_up(hog: HogPeopleDetector) -> None:
    most, close = hog.placements(2160, 3840)  # 4K: people under a tenth of the height are skipped
    assert most.scale == pytest.approx(96 / 216) and (most.height, most.width) == (960, 1707)
    assert close.scale == pytest.approx(137 / 2160, rel=0.01) and close.pad_y == 24
    assert hog.placements(576, 768)[0].scale == pytest.approx(96 / 60)  # vtest: min_person_height 60
    most, close = hog.placements(64, 64)  # too small for the first pass, the close pass enlarges it
    assert not most.fits_window and close.fits_window and close.scale == pytest.approx(137 / 64, rel=0.01)
    assert not any(place.fits_window for place in hog.placements(2, 2))  # at most 4x: 8x8 px
    assert len(hog.detect(np.full((64, 64, 3), 128, np.uint8))) == 0


def test_hog_survives_frames_smaller_than_its_window() -> None:
    """OpenCV's detectMultiScale kills the process (SIGSEGV, glibc abort) on images smaller than its
    window: run in a child process, so that a crash fails this test instead of the test run."""
    sizes = [(1, 1), (2, 2), (63, 127), (64, 128), (64, 64), (127, 63), (1, 500), (500, 1)]
    code = (
        "import numpy as np\n"
        "from tdmi.service.detection import HogPeopleDetector\n"
        "hog = HogPeopleDetector()\n"
        f"for w, h in {sizes!r}:\n"
        "    found = hog.detect(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8))\n"
        "    print(w, h, len(found), flush=True)\n"
    )
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, f"exit {child.returncode}: {child.stderr[-2000:]}"
    assert [line.split()[:2] for line in child.stdout.splitlines()] == [[str(w), str(h)] for w, h in sizes]


# --- shared pieces ----------------------------------------------------------------------------


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 10]])
    assert nms(boxes, np.array([0.5, 0.9, 0.7, 0.1]), iou_threshold=0.5).tolist() == [1, 2]


def test_detections_hold_float32_and_check_lengths() -> None:
    found = Detections([[0, 0, 1, 1]], [1])
    assert found.xyxy.dtype == np.float32 and found.xyxy.shape == (1, 4) and len(found) == 1
    assert len(Detections.empty()) == 0
    with pytest.raises(ValueError, match="2 boxes, 1 scores"):
        Detections(np.zeros((2, 4)), np.zeros(1))
    assert found.sure is not None and found.sure.tolist() == [True]  # none given: all sure
    with pytest.raises(ValueError, match="1 sure flags"):
        Detections(np.zeros((2, 4)), np.zeros(2), [True])


# --- client boxes -----------------------------------------------------------------------------


def test_client_boxes_are_clipped_and_default_to_score_one() -> None:
    found = parse_client_boxes([[-10, 5, 50, 60], [10, 20, 700, 80.5, 0.4]], image_size=(640, 480))
    np.testing.assert_allclose(found.xyxy, [[0, 5, 50, 60], [10, 20, 640, 80.5]])
    np.testing.assert_allclose(found.scores, [1.0, 0.4])
    assert len(parse_client_boxes([], image_size=(640, 480))) == 0


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"x1": 0}, "must be a list"),
        ([[0, 0, 10]], "box 0 must be"),
        ([[0, 0, 10, 10], "0,0,10,10"], "box 1 must be"),
        ([[0, 0, "10", 10]], "must hold numbers"),
        ([[0, 0, True, 10]], "must hold numbers"),
        ([[0, 0, float("nan"), 10]], "finite"),
        ([[30, 0, 10, 10]], r"box 0 \[30, 0, 10, 10\] has no area"),
        ([[0, 5, 10, 5]], "has no area"),
        ([[0, 0, 10, 10, 1.5]], "score 1.5, outside"),
        ([[650, 10, 700, 50]], "entirely outside the 640x480 frame"),
        ([[0, 0, 10, 10]] * 3, "at most 2 boxes"),
    ],
)
def test_bad_client_boxes_are_refused_with_the_reason(raw, message) -> None:
    with pytest.raises(InvalidBoxesError, match=message):
        parse_client_boxes(raw, image_size=(640, 480), max_boxes=2)


# --- propagation and schedule -----------------------------------------------------------------


def test_the_detector_runs_every_n_frames_and_when_someone_is_lost() -> None:
    schedule = DetectionSchedule(every=3)
    steady = [schedule.should_detect(tracked=2, propagated=2) for _ in range(7)]
    assert steady == [True, False, False, True, False, False, True]
    assert schedule.should_detect(tracked=2, propagated=2) is False  # frame 7
    assert schedule.should_detect(tracked=2, propagated=1) is True  # frame 8: a person was lost
    assert schedule.should_detect(tracked=1, propagated=1) is True  # frame 9: the grid did not move
    assert schedule.should_detect(tracked=1, propagated=1) is False
    assert schedule.should_detect(tracked=2, propagated=1) is True  # frame 11: lost, the first time
    assert schedule.should_detect(tracked=2, propagated=1) is True  # frame 12: the grid
    assert schedule.should_detect(tracked=2, propagated=1) is True  # frame 13: lost, once more
    assert schedule.should_detect(tracked=2, propagated=1) is False  # frame 14: once per interval
    assert [schedule.on_grid(i) for i in range(7)] == steady
    assert all(DetectionSchedule(every=1).should_detect(0, 0) for _ in range(3))
    with pytest.raises(ValueError, match=">= 1 frame"):
        DetectionSchedule(every=0)


class _CountingDetector:
    """Finds the same two people in every image and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def detect(self, image: np.ndarray) -> Detections:
        self.calls += 1
        return Detections(np.array([[10, 10, 50, 90], [60, 10, 100, 90]]), np.array([0.9, 0.8]))


class _GatedDetector(_CountingDetector):
    """Answers only once ``gate`` is set (a detector slower than the frames)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def detect(self, image: np.ndarray) -> Detections:
        assert self.gate.wait(10)
        return super().detect(image)


@pytest.mark.parametrize("live", [True, False])
def test_a_live_stream_does_not_wait_for_the_detector_while_it_follows_someone(live: bool) -> None:
    detector = _GatedDetector()
    boxes = SessionBoxes("auto", detector, 2, ThreadPoolExecutor(1), live=live)
    image = np.zeros((120, 160, 3), np.uint8)
    tracker = PoseTracker()

    async def scenario() -> list[list[int]]:
        detector.gate.set()
        first = await boxes.boxes_for(StreamFrame(0, image), tracker)  # nobody followed yet: waits
        await boxes.boxes_for(StreamFrame(1, image), tracker)
        detector.gate.clear()
        on_grid = asyncio.ensure_future(boxes.boxes_for(StreamFrame(2, image), tracker))
        await asyncio.sleep(0.2)
        answered = on_grid.done()
        detector.gate.set()
        await on_grid
        while detector.calls < 2:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # the detector's answer reaches the loop
        later = await boxes.boxes_for(StreamFrame(3, image), tracker)
        return [len(first[0]), int(answered), len(later[0]), int(later[1].tolist() == first[1].tolist())]

    with_people, answered, later_people, same_ids = asyncio.run(scenario())
    assert with_people == 2 and later_people == 2 and same_ids == 1
    assert answered == live  # a live frame went on with the followed boxes; a job's waited
    assert detector.calls == 2


def test_a_live_stream_follows_its_tracks_until_keypoints_come_back() -> None:
    """Frame t+1 is boxed before frame t's keypoints exist: it must not come out empty."""
    detector = _CountingDetector()
    boxes = SessionBoxes("auto", detector, 3, ThreadPoolExecutor(1))
    image = np.zeros((120, 160, 3), np.uint8)
    tracker = PoseTracker()

    async def frames() -> list[tuple[np.ndarray, np.ndarray]]:
        return [await boxes.boxes_for(StreamFrame(i, image), tracker) for i in range(4)]

    found = asyncio.run(frames())
    assert [len(b) for b, _ in found] == [2, 2, 2, 2]
    assert detector.calls == 2  # frame 0, then frame 3 on the cadence; frames 1-2 followed
    assert all(ids.tolist() == found[0][1].tolist() for _, ids in found)
    np.testing.assert_allclose(found[1][0][:, :4], found[0][0][:, :4])  # no motion yet: in place
    person = np.array([[20.0, 20.0, 0.9], [40.0, 80.0, 0.9], [30.0, 50.0, 0.9]])
    for position, shift in ((4, 0.0), (5, 5.0)):  # the person walks 5 px to the right
        tracker.observe_keypoints(found[0][1][:1], np.stack([person + [shift, 0, 0]]))
        followed, ids = asyncio.run(boxes.boxes_for(StreamFrame(position, image), tracker))
        assert ids.tolist() == found[0][1].tolist()  # both still followed: one measured, one coasting
    assert followed[0, 0] - found[3][0][0, 0] > 2.5  # the keypoints moved the first box
    np.testing.assert_allclose(followed[1, :4], found[3][0][1, :4])  # the other one stayed


def test_a_person_the_detector_misses_keeps_the_box_the_pose_model_follows() -> None:
    class FindsOne:
        def detect(self, image: np.ndarray) -> Detections:
            return Detections(np.array([[10.0, 10, 50, 90]]), np.array([0.9]))

    boxes = SessionBoxes("auto", FindsOne(), 2, ThreadPoolExecutor(1))
    image = np.zeros((120, 160, 3), np.uint8)
    tracker = PoseTracker()
    tracker.update(np.array([[10.0, 10, 50, 90], [100, 10, 140, 90]]))
    both = np.array(
        [[[15.0, 15, 0.9], [45, 85, 0.9], [30, 50, 0.9]], [[105.0, 15, 0.9], [135, 85, 0.9], [120, 50, 0.9]]]
    )
    tracker.observe_keypoints(np.array([t.track_id for t in tracker.tracks]), both)
    found, ids = asyncio.run(boxes.boxes_for(StreamFrame(0, image), tracker))  # a detection frame
    assert sorted(ids.tolist()) == sorted(t.track_id for t in tracker.tracks) and len(found) == 2
    assert all(t.misses == 0 for t in tracker.tracks)


def test_boxes_are_clipped_to_the_frame_and_emptied_ones_dropped() -> None:
    boxes = np.array(
        [[-5, 10, 50, 90, 0.9], [60, 10, 100, 200, 0.8], [90, 0, 120, 50, 0.7]], dtype=np.float32
    )
    clipped = clip_to_frame(boxes, (60, 80, 3))  # an 80 x 60 image
    assert clipped.tolist() == [[0, 10, 50, 60, pytest.approx(0.9)], [60, 10, 80, 60, pytest.approx(0.8)]]
    assert clip_to_frame(boxes[:0], (60, 80, 3)).shape == (0, 5)


def test_boxes_carried_over_from_a_larger_frame_stay_inside_the_smaller_one() -> None:
    """A live stream that shrinks its frames: the followed boxes must not leave the new frame."""
    detector = _CountingDetector()  # two people, up to x = 100, y = 90
    boxes = SessionBoxes("auto", detector, 3, ThreadPoolExecutor(1))
    tracker = PoseTracker()

    async def frames() -> list[np.ndarray]:
        large, _ = await boxes.boxes_for(StreamFrame(0, np.zeros((120, 160, 3), np.uint8)), tracker)
        small, _ = await boxes.boxes_for(StreamFrame(1, np.zeros((60, 80, 3), np.uint8)), tracker)
        return [large, small]

    large, small = asyncio.run(frames())
    assert detector.calls == 1  # frame 1 was followed, not detected
    assert large[:, :4].tolist() == [[10, 10, 50, 90], [60, 10, 100, 90]]
    np.testing.assert_allclose(small[:, :4], [[10, 10, 50, 60], [60, 10, 80, 60]], atol=1e-4)


def test_a_detection_started_ahead_is_used_and_not_run_again(tmp_path: Path) -> None:
    """A video job detects grid frames before they arrive: the session takes that answer as its
    own (same boxes, the detector's seconds reported) and does not call the detector again."""
    settings = Settings(detector="none", detect_every=3, data_dir=tmp_path)
    factory = SessionFactory(settings, ServiceMetrics())
    detector = _CountingDetector()
    factory.detector = detector
    image = np.zeros((120, 160, 3), np.uint8)
    stages: list[tuple[str, float]] = []
    boxes = SessionBoxes("auto", detector, 3, ThreadPoolExecutor(1), lambda s, t: stages.append((s, t)))

    async def run() -> tuple[list, list[np.ndarray]]:
        ahead = [factory.detect_ahead(i, image) for i in range(7)]
        tracker = PoseTracker()
        found = [
            (await boxes.boxes_for(StreamFrame(i, image, detected_ahead=ahead[i]), tracker))[0]
            for i in range(7)
        ]
        return ahead, found

    ahead, found = asyncio.run(run())
    assert [a is not None for a in ahead] == [True, False, False, True, False, False, True]
    assert detector.calls == 3  # the grid frames, each once, all of them ahead
    assert [s for s, _ in stages] == ["detect"] * 3 and all(t >= 0 for _, t in stages)
    assert all(np.allclose(f, found[0], atol=1e-4) for f in found)
    factory.close()
