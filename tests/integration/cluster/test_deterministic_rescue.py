"""A job rescued from a worker killed mid-job gives the poses of an undisturbed run, exactly.

The HOG detector on real pedestrians: between detector runs boxes are propagated from keypoints,
so any dependence on timing, on the worker, or on where the killed run stopped would show.
"""

from __future__ import annotations

import signal
import time

import httpx
import pytest
import redis as redis_client

from tests.integration.determinism import HOG, PEDESTRIAN_FRAMES, poses_of, submit_clip, wait_result

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def test_a_rescued_job_gives_the_result_of_an_undisturbed_run(make_cluster) -> None:
    # each frame waits 150 ms for its batch: a job of 16 frames lasts seconds even on a fast machine,
    # so the worker can be killed in its middle (the wait cannot change a result: that is the point)
    cluster = make_cluster(**HOG, TDMI_MAX_DELAY_MS="150")
    api = cluster.start_api()
    doomed = cluster.start_worker("doomed")
    job_id = submit_clip(api.base)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # kill it once it is visibly in the middle of the job
        status = httpx.get(f"{api.base}/v1/pose/{job_id}", timeout=5).json()
        if status["status"] == "running" and status["progress"]["frames_done"] > 0:
            break
        time.sleep(0.05)
    assert 0 < status["progress"]["frames_done"] < PEDESTRIAN_FRAMES, status
    doomed.stop(signal.SIGKILL)
    cluster.start_worker("rescuer")
    rescued = wait_result(api.base, job_id)
    job = redis_client.Redis.from_url(cluster.redis_url).hgetall(f"tdmi:job:{job_id}")
    assert job[b"worker"] == b"rescuer" and job[b"attempts"] == b"2"

    undisturbed = wait_result(api.base, submit_clip(api.base))
    assert sum(len(f["persons"]) for f in undisturbed["frames"]) > PEDESTRIAN_FRAMES
    assert poses_of(rescued) == poses_of(undisturbed)
