"""The same video and settings give the same result JSON, however many jobs run beside it.

A real server with the HOG detector on a clip of real pedestrians: boxes between detector runs
are propagated from keypoints, the path whose timing used to leak into results.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.helpers.server import ServerFactory, ServerProcess
from tests.integration.determinism import (
    HOG,
    PEDESTRIAN_FRAMES,
    detector_runs,
    poses_of,
    submit_clip,
    wait_result,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hog_server(server_factory: ServerFactory) -> ServerProcess:
    """The demo model, the default HOG detector every 5 frames, two jobs at a time."""
    return server_factory.get(env={**HOG, "TDMI_MAX_RUNNING_JOBS": "2"})


def test_the_same_clip_three_times_two_at_once_gives_one_result(hog_server: ServerProcess) -> None:
    base = hog_server.base
    with ThreadPoolExecutor(2) as pool:  # two runs side by side: their frames share batches
        first, second = pool.map(lambda _: wait_result(base, submit_clip(base)), range(2))
    detected = detector_runs(base)
    third = wait_result(base, submit_clip(base))  # one run alone
    assert len(first["frames"]) == PEDESTRIAN_FRAMES
    persons = [sum(len(f["persons"]) for f in r["frames"]) for r in (first, second, third)]
    assert persons[0] > PEDESTRIAN_FRAMES  # several pedestrians per frame
    assert detected < 2 * PEDESTRIAN_FRAMES  # most frames' boxes were propagated, not detected
    assert poses_of(second) == poses_of(first), persons
    assert poses_of(third) == poses_of(first), persons
    ids = sorted({p["track_id"] for f in first["frames"] for p in f["persons"]})
    assert ids[0] == 1  # track ids are the job's own, numbered from 1


def test_the_clip_gives_its_result_again_after_a_restart(hog_server: ServerProcess, tmp_path: Path) -> None:
    before = wait_result(hog_server.base, submit_clip(hog_server.base))
    other = ServerProcess(tmp_path, env={**HOG, "TDMI_MAX_RUNNING_JOBS": "1"})
    try:
        other.wait_ready(timeout=300)
        after = wait_result(other.base, submit_clip(other.base))
    finally:
        other.stop()
    assert poses_of(after) == poses_of(before)
