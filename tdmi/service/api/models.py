"""``GET /v1/models``: what is loaded, with joint names and skeleton, and whether its weights are
a shipped demo that knows synthetic figures only (the browser page says so; people expect a pose
service to find people). An API node of a cluster knows its workers' checkpoints by file name
only, so the demo files are told by name."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter

from tdmi.protocol import ModelPublic, ModelsPublic
from tdmi.service.config import DEMO_CHECKPOINT
from tdmi.service.deps import Authorised, NodeDep
from tdmi.service.inference.runtime import ModelInfo

router = APIRouter(prefix="/v1", tags=["models"], dependencies=[Authorised])

SYNTHETIC_DEMOS = frozenset(path.name for path in DEMO_CHECKPOINT.parent.glob("*.pt"))


def is_synthetic_demo(checkpoint: Path | None) -> bool:
    return checkpoint is not None and checkpoint.name in SYNTHETIC_DEMOS


def model_public(loaded: ModelInfo) -> ModelPublic:
    preset = loaded.preset
    return ModelPublic(
        name=preset.name,
        description=preset.description,
        num_frames=preset.num_frames,
        input_size=preset.input_size,
        checkpoint=loaded.checkpoint.name if loaded.checkpoint else None,
        skeleton=loaded.skeleton(),
        synthetic_demo=is_synthetic_demo(loaded.checkpoint),
    )


@router.get("/models", operation_id="list_models")
def list_models(node: NodeDep) -> ModelsPublic:
    """Empty while the node is still loading."""
    return ModelsPublic(models=[model_public(m) for m in node.catalog.models.values()])
