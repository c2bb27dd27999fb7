"""Person boxes for the pose pipeline: from the client, a detector (HOG or an ONNX export: YOLO,
YOLOX, MMDeploy), or propagated from the previous frame's keypoints.

    detector = make_detector("onnx:/models/yolox_s.onnx")   # or "onnx-mmdeploy:PATH", "hog", "none" -> None
    found = detector.detect(frame_rgb)                       # Detections: xyxy (N, 4), scores (N,)
"""

from tdmi.service.detection.base import (
    Detections,
    Detector,
    DetectorUnavailableError,
    TimedDetections,
    make_detector,
    nms,
    onnx_spec,
)
from tdmi.service.detection.client_boxes import InvalidBoxesError, parse_client_boxes
from tdmi.service.detection.hog import HogPeopleDetector
from tdmi.service.detection.onnx_layouts import DetectorLayout
from tdmi.service.detection.onnx_yolo import OnnxYoloDetector
from tdmi.service.detection.propagate import DetectionSchedule

__all__ = [
    "DetectionSchedule",
    "Detections",
    "Detector",
    "DetectorLayout",
    "DetectorUnavailableError",
    "HogPeopleDetector",
    "InvalidBoxesError",
    "OnnxYoloDetector",
    "TimedDetections",
    "make_detector",
    "nms",
    "onnx_spec",
    "parse_client_boxes",
]
