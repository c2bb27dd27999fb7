"""``GET /v1/models``: what is loaded, with joint names and skeleton."""

from __future__ import annotations

from fastapi import APIRouter, Request

from protocol import ModelPublic, ModelsPublic, SkeletonPublic
from service.registry import LoadedModel

router = APIRouter(prefix="/v1", tags=["models"])


def _public(loaded: LoadedModel) -> ModelPublic:
    preset, layout = loaded.preset, loaded.preset.layout
    return ModelPublic(
        name=preset.name,
        description=preset.description,
        num_frames=preset.num_frames,
        input_size=preset.input_size,
        checkpoint=loaded.checkpoint.name if loaded.checkpoint else None,
        skeleton=SkeletonPublic(
            layout=layout.name,
            joints=list(layout.joints),
            edges=list(layout.skeleton),
            flip_pairs=list(layout.flip_pairs),
        ),
    )


@router.get("/models", operation_id="list_models")
def list_models(request: Request) -> ModelsPublic:
    registry = request.app.state.registry
    return ModelsPublic(models=[_public(m) for m in registry.models.values()] if registry else [])
