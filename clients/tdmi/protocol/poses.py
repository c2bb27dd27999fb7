"""Keypoint results: what the service returns for each person in each frame."""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["FramePoses", "PersonPose"]


class PersonPose(BaseModel):
    """One person in one frame, in source-image pixels."""

    track_id: int = Field(description="stable within a stream or job, never shared between streams")
    box: tuple[float, float, float, float] = Field(description="x1, y1, x2, y2")
    box_score: float = Field(description="detector confidence (1 for boxes given by the client)")
    keypoints: list[tuple[float, float, float]] = Field(
        description="one (x, y, score) per joint, in the model's layout order; score is the heatmap peak"
    )


class FramePoses(BaseModel):
    """Every person found in one frame."""

    index: int = Field(description="frame index in the video (0-based) or the live frame id")
    pts: float | None = Field(description="presentation time in seconds (null when unknown)")
    persons: list[PersonPose]
