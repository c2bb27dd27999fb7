"""What the determinism tests share: the pedestrian clip, submitting it, and comparing results."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx

__all__ = [
    "HOG",
    "PEDESTRIANS",
    "PEDESTRIAN_FRAMES",
    "detector_runs",
    "poses_of",
    "submit_clip",
    "wait_result",
]

# 16 frames of OpenCV's vtest.avi (real pedestrians, 384x256): see tests/data/SOURCES.md
PEDESTRIANS = Path(__file__).resolve().parents[1] / "data" / "pedestrians" / "vtest_cut.mp4"
PEDESTRIAN_FRAMES = 16

# the server's detector on the clip every 5 frames; one torch thread and small batch buckets keep
# a busy 2-core machine's start-up and forwards short (threads that wait on each other stall)
HOG = {"TDMI_DETECTOR": "hog", "TDMI_DETECT_EVERY": "5", "OMP_NUM_THREADS": "1", "TDMI_MAX_BATCH": "8"}


def submit_clip(base: str, **fields: str) -> str:
    with PEDESTRIANS.open("rb") as f:
        reply = httpx.post(
            f"{base}/v1/pose", files={"file": ("clip.mp4", f, "video/mp4")}, data=fields, timeout=60
        )
    assert reply.status_code == 202, reply.text
    return reply.json()["job_id"]


def wait_result(base: str, job_id: str, timeout: float = 300) -> dict:
    """The job's result JSON once it is done (fails the test if it fails or never ends)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = httpx.get(f"{base}/v1/pose/{job_id}", timeout=10).json()
        if status["status"] not in ("queued", "running"):
            break
        time.sleep(0.1)
    assert status["status"] == "done", status
    reply = httpx.get(f"{base}/v1/pose/{job_id}/result", timeout=30)
    assert reply.status_code == 200, reply.text
    return reply.json()


def poses_of(result: dict) -> dict:
    """The result JSON without the fields documented to differ between runs (the job id)."""
    return {key: value for key, value in result.items() if key != "job_id"}


def detector_runs(base: str) -> int:
    """How many frames the server's detector has run on so far (from /metrics)."""
    text = httpx.get(f"{base}/metrics", timeout=10).text
    match = re.search(r'^tdmi_stage_seconds_count\{stage="detect"\} (\S+)$', text, re.MULTILINE)
    return int(float(match.group(1))) if match else 0
