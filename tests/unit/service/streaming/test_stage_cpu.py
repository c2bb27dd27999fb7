"""``tdmi_stage_cpu_seconds_total``: a live feed's frames move the CPU counters of the stages that
share a thread (decode on the default pool, the rest on the event loop), and only those."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from tdmi.model.presets import get_preset
from tdmi.protocol.stream import ConfigMessage, ResultMessage
from tdmi.service.config import Settings
from tdmi.service.inference.work import FrameWork, PoseArrays
from tdmi.service.metrics import CPU_STAGES, ServiceMetrics
from tdmi.service.streaming.factory import SessionFactory
from tdmi.service.streaming.feed import LocalFeed, errors_ignored

FRAMES = 6
BOX = [[40.0, 30.0, 200.0, 400.0]]


class _Engine:
    """Answers every frame at once, one pose per box (the model is not what is measured here)."""

    async def submit(self, work: FrameWork) -> bool:
        work.resolve(PoseArrays(np.full((work.size, 17, 3), 50.0, dtype=np.float32)))
        return True


def _stage_cpu(metrics: ServiceMetrics) -> dict[str, float]:
    """The counters as ``/metrics`` shows them."""
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            if sample.name == "tdmi_stage_cpu_seconds_total":
                out[sample.labels["stage"]] = sample.value
    return out


def test_a_live_feeds_frames_move_the_cpu_counters_of_its_stages(tmp_path: Path) -> None:
    settings = Settings(detector="none", data_dir=tmp_path)
    metrics = ServiceMetrics()
    model = SimpleNamespace(name="tdmi-tiny", preset=get_preset("tdmi-tiny"), engine=_Engine())
    feed = LocalFeed(
        "s",
        errors_ignored,
        runtime=SimpleNamespace(get=lambda name: model),  # type: ignore[arg-type]
        sessions=SessionFactory(settings, metrics),
        settings=settings,
        metrics=metrics,
    )
    jpeg = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (480, 640, 3), np.uint8))[1]
    before = _stage_cpu(metrics)

    async def scenario() -> list[object]:
        await feed.open(ConfigMessage(lookahead=0, detector="client"))
        for i in range(FRAMES):
            await feed.push(jpeg.tobytes(), i, None, BOX, None)
        await feed.end()
        return [reply async for reply in feed.replies()]

    replies = asyncio.run(scenario())
    assert [type(r) for r in replies] == [ResultMessage] * FRAMES
    spent = {stage: seconds - before.get(stage, 0.0) for stage, seconds in _stage_cpu(metrics).items()}
    assert set(spent) == set(CPU_STAGES)
    for stage in ("receive", "decode", "buffer", "track", "encode"):  # the feed's and session's stages
        assert spent[stage] > 0, stage
    assert spent["send"] == 0  # the WebSocket's, not the feed's
    assert spent["decode"] > spent["buffer"]  # six 640x480 JPEGs decoded: more than a dict's work
