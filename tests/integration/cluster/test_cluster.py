"""Scale-out end to end: real redis-server, one or two API nodes, two workers, all on the CPU."""

from __future__ import annotations

import json
import signal
import threading
import time

import httpx
import numpy as np
import pytest
import redis as redis_client
from websockets.sync.client import connect

from tdmi.protocol.stream import pack_frame
from tests.helpers.redis_server import RedisServer
from tests.helpers.synth import SynthVideo
from tests.integration.cluster.conftest import result, submit, wait_finished

pytestmark = pytest.mark.redis


def _same_poses(a: dict, b: dict) -> bool:
    """Equal up to float noise: batches of different sizes round differently on the CPU."""
    if [len(f["persons"]) for f in a["frames"]] != [len(f["persons"]) for f in b["frames"]]:
        return False
    points = [np.array([p["keypoints"] for p in f["persons"]]) for f in a["frames"]]
    others = [np.array([p["keypoints"] for p in f["persons"]]) for f in b["frames"]]
    return all(np.allclose(x, y, atol=1e-2) for x, y in zip(points, others, strict=True))


def test_jobs_spread_over_two_workers_with_equal_results(make_cluster, synth_video: SynthVideo) -> None:
    cluster = make_cluster()
    api = cluster.start_api()
    cluster.start_worker("w1")
    cluster.start_worker("w2")
    cluster.wait_workers({"w1", "w2"})
    job_ids = [submit(api, synth_video) for _ in range(4)]
    statuses = [wait_finished(api, job_id) for job_id in job_ids]
    assert [s["status"] for s in statuses] == ["done"] * 4
    redis = redis_client.Redis.from_url(cluster.redis_url)
    ran_on = {redis.hget(f"tdmi:job:{job_id}", "worker").decode() for job_id in job_ids}
    assert ran_on == {"w1", "w2"}  # each worker runs one job at a time: the queue spreads them
    results = [result(api, job_id) for job_id in job_ids]
    assert all(_same_poses(r, results[0]) for r in results)  # the same video, the same poses
    assert len(results[0]["frames"]) == synth_video.frames
    listing = httpx.get(f"{api.base}/v1/workers").json()
    assert listing["mode"] == "cluster"
    workers = {w["worker_id"]: w for w in listing["workers"]}
    assert all(w["frames"] > 0 and w["models"][0]["name"] == "tdmi-tiny" for w in workers.values())
    assert all(sum(w["batches"].values()) > 0 for w in workers.values())
    for worker in cluster.workers.values():  # each worker's own Prometheus endpoint
        text = httpx.get(f"{worker.base}/metrics").text
        assert 'tdmi_frames_total{kind="job"}' in text and "tdmi_batch_size_clips_bucket" in text


def test_two_api_nodes_serve_the_same_job(make_cluster, synth_video: SynthVideo) -> None:
    cluster = make_cluster()
    first, second = cluster.start_api(), cluster.start_api()
    cluster.start_worker("w1")
    job_id = submit(first, synth_video, render="true")
    assert wait_finished(first, job_id)["status"] == "done"
    seen_by_second = httpx.get(f"{second.base}/v1/pose/{job_id}").json()
    assert seen_by_second["status"] == "done"
    assert seen_by_second["progress"]["frames_done"] == synth_video.frames
    assert result(second, job_id) == result(first, job_id)
    video = httpx.get(f"{second.base}/v1/pose/{job_id}/video", timeout=30)
    assert video.status_code == 200 and video.content[4:8] == b"ftyp"
    assert httpx.get(f"{second.base}/v1/pose/{'0' * 32}").status_code == 404


def test_a_worker_killed_mid_job_the_job_completes_once(make_cluster, long_video: SynthVideo) -> None:
    cluster = make_cluster()
    api = cluster.start_api()
    doomed = cluster.start_worker("doomed")
    job_id = submit(api, long_video)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # kill it once it is visibly in the middle of the job
        status = httpx.get(f"{api.base}/v1/pose/{job_id}").json()
        if status["status"] == "running" and status["progress"]["frames_done"] > 0:
            break
        time.sleep(0.05)
    assert status["progress"]["frames_done"] < long_video.frames
    doomed.stop(signal.SIGKILL)
    cluster.start_worker("rescuer")
    final = wait_finished(api, job_id)
    assert final["status"] == "done" and final["progress"]["frames_done"] == long_video.frames
    redis = redis_client.Redis.from_url(cluster.redis_url)
    job = {k.decode(): v.decode() for k, v in redis.hgetall(f"tdmi:job:{job_id}").items()}
    assert job["worker"] == "rescuer" and job["attempts"] == "2"
    assert redis.xpending("tdmi:jobs", "workers")["pending"] == 0  # the killed run was acknowledged
    assert [p.name for p in (cluster.data_dir / "results").glob(f"{job_id}*")] == [
        f"{job_id}.{job['token']}.json"
    ]  # one result file: the rescuer's
    again = submit(api, long_video)  # an undisturbed run of the same video
    assert wait_finished(api, again)["status"] == "done"
    assert _same_poses(result(api, job_id), result(api, again))


def _stream(api, jpegs: list[bytes], boxes: dict, on_message, out: dict, after: int = 16) -> None:
    """Send frames at about 12 fps until ``on_message`` says the stream moved, and ``after`` more;
    then end the stream and read everything."""
    with connect(f"{api.ws_base}/v1/stream", open_timeout=30) as ws:
        ws.send(json.dumps({"type": "config", "detector": "client", "lookahead": 1, "ack_window": 512}))
        messages = [json.loads(ws.recv(timeout=60))]
        sent, sent_at_move = 0, None
        while sent < 400 and (sent_at_move is None or sent < sent_at_move + after):
            index = sent % len(jpegs)
            ws.send(json.dumps({"type": "boxes", "frame_id": sent, "boxes": boxes[str(index)]}))
            ws.send(pack_frame(jpegs[index], sent, sent / 25))
            sent += 1
            time.sleep(0.08)
            while True:
                try:
                    message = json.loads(ws.recv(timeout=0))
                except TimeoutError:
                    break
                messages.append(message)
                if on_message(message) and sent_at_move is None:
                    sent_at_move = sent
        ws.send(json.dumps({"type": "end"}))
        while messages[-1]["type"] != "ended":
            messages.append(json.loads(ws.recv(timeout=120)))
        out["messages"], out["sent"] = messages, sent


def test_a_live_stream_whose_worker_dies_resumes_on_the_other(
    make_cluster, jpeg_frames: list[bytes], synth_video: SynthVideo
) -> None:
    cluster = make_cluster()
    api = cluster.start_api()
    cluster.start_worker("w1")
    cluster.start_worker("w2")
    cluster.wait_workers({"w1", "w2"})
    killed: dict = {}

    def kill_pinned_worker_after_some_results(message: dict) -> bool:
        """Kills the stream's worker at its fifth result; True once the stream has moved."""
        if message["type"] == "result" and message["frame_id"] >= 4 and not killed:
            listed = httpx.get(f"{api.base}/v1/workers").json()["workers"]
            (pinned,) = [w["worker_id"] for w in listed if w["streams"] == 1]
            killed["worker"] = pinned
            cluster.workers[pinned].stop(signal.SIGKILL)
        return message["type"] == "resumed"

    out: dict = {}
    thread = threading.Thread(
        target=_stream,
        args=(api, jpeg_frames, synth_video.boxes(), kill_pinned_worker_after_some_results, out),
    )
    thread.start()
    thread.join(timeout=300)
    messages = out["messages"]
    assert messages[0]["type"] == "ready" and killed, [(m["type"], m.get("frame_id")) for m in messages]
    resumed = [m for m in messages if m["type"] == "resumed"]
    assert len(resumed) == 1 and killed["worker"] in resumed[0]["reason"]
    answers = [m for m in messages if m["type"] in ("result", "dropped")]
    assert [m["frame_id"] for m in answers] == list(range(out["sent"]))  # every frame, once, in order
    after = [m for m in answers if m["frame_id"] >= resumed[0]["next_frame_id"]]
    assert after and all(m["type"] == "result" for m in after)  # the other worker goes on
    assert messages[-1]["type"] == "ended"
    survivor = ({"w1", "w2"} - {killed["worker"]}).pop()
    assert [w["worker_id"] for w in cluster.wait_workers({survivor})] == [survivor]


def test_redis_restart_loses_no_queued_job(
    make_cluster, tmp_path_factory: pytest.TempPathFactory, synth_video: SynthVideo
) -> None:
    own_redis = RedisServer(tmp_path_factory.mktemp("redis-restart"))
    own_redis.start()
    try:
        cluster = make_cluster(own_redis)
        api = cluster.start_api()
        job_ids = [submit(api, synth_video) for _ in range(3)]  # queued: no worker yet
        own_redis.stop()
        deadline = time.monotonic() + 20
        while httpx.get(f"{api.base}/readyz").status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        down = httpx.get(f"{api.base}/readyz")
        assert down.status_code == 503 and "redis" in down.json()["reason"]
        assert httpx.get(f"{api.base}/v1/pose/{job_ids[0]}").status_code == 503
        own_redis.start()
        deadline = time.monotonic() + 30
        while httpx.get(f"{api.base}/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert httpx.get(f"{api.base}/readyz").status_code == 200
        cluster.start_worker("w1")
        assert [wait_finished(api, job_id)["status"] for job_id in job_ids] == ["done"] * 3
    finally:
        own_redis.stop()
