"""A finished job's result in the three formats ``/v1/pose/{id}/result`` offers."""

from __future__ import annotations

from typing import Any

from tdmi.protocol import JobResultPublic, PersonPose, ResultFormat

__all__ = ["render_result"]


def _flat(person: PersonPose) -> list[float]:
    return [round(v, 3) for point in person.keypoints for v in point]


def _xywh(person: PersonPose) -> list[float]:
    x1, y1, x2, y2 = person.box
    return [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)]


def _person_score(person: PersonPose) -> float:
    scores = [s for _, _, s in person.keypoints]
    return person.box_score * (sum(scores) / len(scores) if scores else 0.0)


def posetrack(result: JobResultPublic) -> dict[str, Any]:
    """One PoseTrack 2018 sequence file: every frame an image, every person an annotation."""
    images = [
        {
            "id": frame.index,
            "file_name": f"{frame.index:06d}.jpg",
            "frame_id": frame.index,
            "nframes": result.video.frames,
            "is_labeled": True,
            "ignore_regions_x": [],
            "ignore_regions_y": [],
        }
        for frame in result.frames
    ]
    annotations = [
        {
            "image_id": frame.index,
            "track_id": person.track_id,
            "category_id": 1,
            "keypoints": _flat(person),
            "scores": [round(s * person.box_score, 4) for _, _, s in person.keypoints],
            "bbox": _xywh(person),
        }
        for frame in result.frames
        for person in frame.persons
    ]
    category = {
        "id": 1,
        "name": "person",
        "keypoints": result.skeleton.joints,
        "skeleton": [[a + 1, b + 1] for a, b in result.skeleton.edges],
    }
    return {"images": images, "annotations": annotations, "categories": [category]}


def coco(result: JobResultPublic) -> list[dict[str, Any]]:
    """COCO keypoint results: one entry per person per frame, ``image_id`` the frame index."""
    return [
        {
            "image_id": frame.index,
            "category_id": 1,
            "keypoints": _flat(person),
            "score": round(_person_score(person), 4),
            "bbox": _xywh(person),
            "track_id": person.track_id,
        }
        for frame in result.frames
        for person in frame.persons
    ]


def render_result(result: JobResultPublic, fmt: ResultFormat) -> Any:
    if fmt == "json":
        return result.model_dump(mode="json")
    if fmt == "posetrack":
        return posetrack(result)
    return coco(result)
