"""``/v1/pose`` as clients use it: create, poll, results in every format, the overlay, delete, the
queue's bound. The fake node's runner answers each given box with one deterministic pose."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from tests.helpers.fake_node import fake_person
from tests.helpers.in_process import StartApp, TestClient
from tests.helpers.synth import SynthVideo
from tests.helpers.waits import until


def _submit(client: TestClient, video: SynthVideo, **fields: str) -> Any:
    return client.post("/v1/pose", files={"file": ("clip.mp4", video.path.read_bytes())}, data=fields)


def _finished(client: TestClient, job_id: str) -> dict[str, Any]:
    def status() -> dict[str, Any]:
        return client.get(f"/v1/pose/{job_id}").json()

    until(lambda: status()["status"] in ("done", "failed", "cancelled"), f"job {job_id} finished", 60)
    return status()


def test_a_job_from_upload_to_every_result_format(client: TestClient, synth_video: SynthVideo) -> None:
    boxes = synth_video.boxes()
    reply = _submit(client, synth_video, boxes=json.dumps(boxes), render="true")
    assert reply.status_code == 202, reply.text
    created = reply.json()
    assert created["status"] == "queued" and reply.headers["location"] == created["links"]["self"]
    assert created["links"]["video"] == f"{created['links']['self']}/video"

    status = _finished(client, created["job_id"])
    assert status["status"] == "done" and status["model"] == "tdmi-tiny" and status["error"] is None
    assert status["progress"]["frames_done"] == status["progress"]["frames_total"] == synth_video.frames

    result = client.get(created["links"]["result"]).json()
    assert [f["index"] for f in result["frames"]] == list(range(synth_video.frames))
    assert result["video"]["width"] == synth_video.width and result["video"]["frames"] == synth_video.frames
    person, expected = result["frames"][0]["persons"][0], fake_person(0, boxes["0"][0], 17)
    assert np.allclose(person["box"], expected.box, atol=1e-3)  # the box as given (float32 inside)
    assert np.allclose(person["keypoints"], expected.keypoints, atol=1e-3)
    assert [len(f["persons"]) for f in result["frames"]] == [len(b) for b in boxes.values()]
    posetrack = client.get(created["links"]["result"], params={"format": "posetrack"}).json()
    assert len(posetrack["images"]) == synth_video.frames
    assert len(posetrack["annotations"]) == sum(len(b) for b in boxes.values())
    coco = client.get(created["links"]["result"], params={"format": "coco"}).json()
    assert len(coco) == len(posetrack["annotations"]) and {"image_id", "keypoints", "score"} <= set(coco[0])
    video = client.get(created["links"]["video"])
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"


def test_wait_answers_with_the_result(client: TestClient, synth_video: SynthVideo) -> None:
    reply = client.post(
        "/v1/pose", params={"wait": "true"}, files={"file": ("a.mp4", synth_video.path.read_bytes())}
    )
    assert reply.status_code == 200, reply.text
    assert len(reply.json()["frames"]) == synth_video.frames
    assert all(len(f["persons"]) == 1 for f in reply.json()["frames"])  # the fake detector's one person


def test_a_queued_job_has_no_result_yet_and_is_cancelled_by_delete(
    start_app: StartApp, synth_video: SynthVideo
) -> None:
    client, _ = start_app(jobs_run=False)
    job = _submit(client, synth_video).json()["job_id"]
    for path in ("result", "video"):
        early = client.get(f"/v1/pose/{job}/{path}")
        assert early.status_code == {"result": 409, "video": 404}[path], early.text
    assert client.get(f"/v1/pose/{job}/video").json()["error"] == "not_rendered"
    reply = client.delete(f"/v1/pose/{job}")
    assert reply.status_code == 200 and reply.json()["status"] == "cancelled"
    assert client.get(f"/v1/pose/{job}").status_code == 404
    assert client.delete(f"/v1/pose/{job}").status_code == 404
    assert client.get("/v1/pose/not-an-id").status_code == 404


def test_a_finished_job_is_deleted_with_its_files(start_app: StartApp, synth_video: SynthVideo) -> None:
    client, node = start_app()
    job = _submit(client, synth_video, render="true").json()["job_id"]
    assert _finished(client, job)["status"] == "done"
    files = [p for p in node.settings.data_dir.rglob(f"{job}*") if p.is_file()]
    assert files  # the result and the overlay (the upload went once the job ended)
    reply = client.delete(f"/v1/pose/{job}")
    assert reply.status_code == 200 and reply.json()["status"] == "done"  # deleted as it was
    assert not any(p.exists() for p in files)


def test_a_full_queue_is_429_until_a_job_leaves_it(start_app: StartApp, synth_video: SynthVideo) -> None:
    client, _ = start_app(jobs_run=False, max_queued_jobs=2)
    first = _submit(client, synth_video).json()["job_id"]
    assert _submit(client, synth_video).status_code == 202
    full = _submit(client, synth_video)
    assert full.status_code == 429 and full.json()["error"] == "too_many_jobs"
    assert client.delete(f"/v1/pose/{first}").status_code == 200
    assert _submit(client, synth_video).status_code == 202


def test_models_describe_what_requests_may_name(start_app: StartApp) -> None:
    client, _ = start_app(models=("tdmi-tiny", "hrnet-w32-256x192"))
    models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert (
        models["tdmi-tiny"]["num_frames"] == 5 and models["tdmi-tiny"]["skeleton"]["joints"][2] == "head_top"
    )
    assert models["hrnet-w32-256x192"]["skeleton"]["layout"] == "coco-17"
    assert models["hrnet-w32-256x192"]["input_size"] == [256, 192]
