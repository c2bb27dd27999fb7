"""Person boxes for the pose pipeline: from the client, a detector (HOG or a YOLO ONNX export), or
propagated from the previous frame's keypoints.

    detector = make_detector("onnx:/models/yolov8n.onnx")   # or "hog", or "none" -> None
    found = detector.detect(frame_rgb)                       # Detections: xyxy (N, 4), scores (N,)
"""

from tdmi.service.detection.base import Detections, Detector, DetectorUnavailableError, make_detector, nms
from tdmi.service.detection.client_boxes import InvalidBoxesError, parse_client_boxes
from tdmi.service.detection.hog import HogPeopleDetector
from tdmi.service.detection.onnx_yolo import OnnxYoloDetector, YoloLayout
from tdmi.service.detection.propagate import DetectionSchedule, boxes_from_keypoints

__all__ = [
    "DetectionSchedule",
    "Detections",
    "Detector",
    "DetectorUnavailableError",
    "HogPeopleDetector",
    "InvalidBoxesError",
    "OnnxYoloDetector",
    "YoloLayout",
    "boxes_from_keypoints",
    "make_detector",
    "nms",
    "parse_client_boxes",
]
