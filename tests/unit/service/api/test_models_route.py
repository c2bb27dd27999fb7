"""``GET /v1/models`` tells the shipped demo weights (synthetic figures only) from the others,
by the file's path in an embedded node and by its name alone in an API node of a cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from tdmi.model.presets import get_preset
from tdmi.service.api.models import SYNTHETIC_DEMOS, model_public
from tdmi.service.config import DEMO_CHECKPOINT
from tdmi.service.inference.runtime import ModelInfo


def test_the_shipped_demos_are_the_synthetic_checkpoints() -> None:
    assert {"tdmi_tiny_synth.pt", "hrnet_tiny_synth.pt"} <= SYNTHETIC_DEMOS


@pytest.mark.parametrize(
    ("checkpoint", "demo"),
    [
        (DEMO_CHECKPOINT, True),  # embedded: the packaged file
        (Path("tdmi_tiny_synth.pt"), True),  # a cluster's API node: the worker's file name
        (DEMO_CHECKPOINT.with_name("hrnet_tiny_synth.pt"), True),
        (Path("/cache/td-hm_hrnet-w32_8xb64-210e_coco-256x192-81c58e40_20220909.pth"), False),
        (None, False),  # untrained
    ],
)
def test_a_model_says_whether_its_weights_are_the_synthetic_demo(checkpoint: Path | None, demo: bool) -> None:
    described = model_public(ModelInfo(get_preset("tdmi-tiny"), checkpoint))
    assert described.synthetic_demo is demo
    assert described.checkpoint == (checkpoint.name if checkpoint else None)
