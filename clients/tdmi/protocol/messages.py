"""Response and request bodies of the REST API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

__all__ = ["HealthPublic", "ModelPublic", "ModelsPublic", "SkeletonPublic"]


class SkeletonPublic(BaseModel):
    """How to read and draw a model's keypoints."""

    layout: str = Field(description="layout name, e.g. posetrack-17")
    joints: list[str]
    edges: list[tuple[int, int]] = Field(description="pairs of joint indices to connect when drawing")
    flip_pairs: list[tuple[int, int]]


class ModelPublic(BaseModel):
    """A model the service has loaded."""

    name: str
    description: str
    num_frames: int = Field(description="frames per clip (1 for single-frame models)")
    input_size: tuple[int, int] = Field(description="crop size (height, width)")
    checkpoint: str | None = Field(description="weights file name, or null for untrained weights")
    skeleton: SkeletonPublic
    synthetic_demo: bool = Field(
        default=False,
        description="the weights are a demo shipped with the service, trained on synthetic figures "
        "only: they do not find real people (published weights: `tdmi weights`)",
    )


class ModelsPublic(BaseModel):
    models: list[ModelPublic]


class HealthPublic(BaseModel):
    status: Literal["ok", "not ready"]
    reason: str | None = None
