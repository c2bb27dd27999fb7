"""``GET /v1/models``: what is loaded, with joint names and skeleton."""

from __future__ import annotations

from fastapi import APIRouter

from tdmi.protocol import ModelPublic, ModelsPublic
from tdmi.service.deps import Authorised, NodeDep
from tdmi.service.inference.runtime import ModelInfo

router = APIRouter(prefix="/v1", tags=["models"], dependencies=[Authorised])


def _public(loaded: ModelInfo) -> ModelPublic:
    preset = loaded.preset
    return ModelPublic(
        name=preset.name,
        description=preset.description,
        num_frames=preset.num_frames,
        input_size=preset.input_size,
        checkpoint=loaded.checkpoint.name if loaded.checkpoint else None,
        skeleton=loaded.skeleton(),
    )


@router.get("/models", operation_id="list_models")
def list_models(node: NodeDep) -> ModelsPublic:
    """Empty while the node is still loading."""
    return ModelsPublic(models=[_public(m) for m in node.catalog.models.values()])
