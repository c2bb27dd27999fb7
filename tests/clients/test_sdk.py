"""The Python SDK against the service (around a fake node: the answers are the service's, the poses
made up): jobs (progress, every format, video, cancel), live streams from a file and from images,
sync and async, and the error paths; and once end to end against a real server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import av
import numpy as np
import pytest

from tdmi.client import (
    AsyncPoseClient,
    AuthError,
    BadRequest,
    FrameResult,
    PoseClient,
    ServerUnreachable,
    SourceError,
    StreamEnded,
    StreamError,
    StreamOptions,
    StreamStarted,
)
from tdmi.protocol import JobResultPublic
from tests.clients.conftest import API_KEY, SynthVideo
from tests.helpers.in_process import ServedApp
from tests.helpers.server import ServerProcess


@pytest.fixture()
def client(service: ServedApp):
    with PoseClient(service.base, api_key=API_KEY) as c:
        yield c


def test_a_job_with_progress_then_every_result_format_and_the_video(
    client: PoseClient, synth_video: SynthVideo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = client.submit(synth_video.path, render=True, boxes=synth_video.boxes())
    done = job.wait(progress=True, poll_s=0.1)
    assert done.status == "done" and done.progress.frames_done == synth_video.frames
    assert f"{synth_video.frames}/{synth_video.frames}" in capsys.readouterr().err  # the progress bar

    result = job.result()
    assert isinstance(result, JobResultPublic)
    assert [f.index for f in result.frames] == list(range(synth_video.frames))
    assert [len(f.persons) for f in result.frames] == [len(b) for b in synth_video.boxes().values()]
    assert len(result.frames[0].persons[0].keypoints) == len(result.skeleton.joints) == 17

    posetrack = job.result("posetrack")
    assert len(posetrack["images"]) == synth_video.frames
    assert len(posetrack["annotations"]) == sum(len(f.persons) for f in result.frames)
    coco = job.result("coco")
    assert isinstance(coco, list) and len(coco) == len(posetrack["annotations"])
    assert {"image_id", "keypoints", "score", "bbox", "track_id"} <= set(coco[0])
    with pytest.raises(ValueError, match="format"):
        job.result("csv")  # type: ignore[call-overload]

    video = job.download_video(tmp_path / "overlay.mp4")
    with av.open(str(video)) as container:
        assert sum(1 for _ in container.decode(video=0)) == synth_video.frames


def test_a_queued_job_is_cancelled_and_deleted_and_waiting_on_it_raises(
    holding_service: ServedApp, synth_video: SynthVideo
) -> None:
    with PoseClient(holding_service.base, api_key=API_KEY) as client:
        first = client.submit(synth_video.path)  # the service runs no job until told
        second = client.submit(synth_video.path)
        cancelled = second.cancel()
        assert cancelled.status == "cancelled"
        with pytest.raises(BadRequest) as gone:
            second.wait(poll_s=0.1)
        assert gone.value.status == 404 and gone.value.kind == "not_found"
        holding_service.node.run_jobs()
        assert first.wait(poll_s=0.1).status == "done"
        assert first.cancel().status == "done"  # a finished job is deleted as it was
        with pytest.raises(BadRequest) as deleted:
            first.result()
        assert deleted.value.status == 404


def test_a_live_stream_from_a_video_file_yields_results_in_frame_order(
    client: PoseClient, synth_video: SynthVideo
) -> None:
    events = list(client.stream(synth_video.path, lookahead=2))
    assert isinstance(events[0], StreamStarted) and events[0].ready.lookahead == 2
    assert isinstance(events[-1], StreamEnded)
    assert events[-1].message.frames == synth_video.frames and events[-1].message.dropped == 0
    results = [e for e in events if isinstance(e, FrameResult)]
    assert [r.frame_id for r in results] == list(range(synth_video.frames))
    # the capture timestamps sent are the file's presentation times, echoed back
    assert np.allclose([r.timestamp for r in results], np.arange(synth_video.frames) / synth_video.fps)
    assert all(r.latency_ms > 0 for r in results)
    assert results[0].image is not None and results[0].image.shape == (
        synth_video.height,
        synth_video.width,
        3,
    )


def test_a_live_stream_of_numpy_images_with_a_small_in_flight_limit(
    client: PoseClient, synth_video: SynthVideo
) -> None:
    with av.open(str(synth_video.path)) as container:
        images = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    events = list(
        client.stream(
            iter(images),
            lookahead=0,
            max_frames=10,
            keep_images=False,
            options=StreamOptions(max_in_flight=1),
        )
    )
    results = [e for e in events if isinstance(e, FrameResult)]
    assert [r.frame_id for r in results] == list(range(10))  # max_frames stops the source
    assert all(r.image is None for r in results)
    assert isinstance(events[-1], StreamEnded)


def test_the_async_client_runs_a_job_and_a_stream(service: ServedApp, synth_video: SynthVideo) -> None:
    async def run() -> tuple[JobResultPublic, list[int]]:
        async with AsyncPoseClient(service.base, api_key=API_KEY) as client:
            assert [m.name for m in (await client.models()).models] == ["tdmi-tiny"]
            job = await client.submit(synth_video.path)
            assert (await job.wait(poll_s=0.1)).status == "done"
            result = await job.result()
            ids = [e.frame_id async for e in client.stream(synth_video.path) if isinstance(e, FrameResult)]
            return result, ids

    result, ids = asyncio.run(run())
    assert len(result.frames) == synth_video.frames
    assert ids == list(range(synth_video.frames))


def test_a_server_that_is_down_raises_server_unreachable(dead_url: str, synth_video: SynthVideo) -> None:
    with PoseClient(dead_url) as client:
        with pytest.raises(ServerUnreachable, match="cannot reach"):
            client.submit(synth_video.path)
        with pytest.raises(ServerUnreachable):
            list(client.stream(synth_video.path))


def test_a_wrong_key_raises_auth_error_with_the_servers_message(
    service: ServedApp, synth_video: SynthVideo
) -> None:
    with PoseClient(service.base, api_key="wrong") as client:
        with pytest.raises(AuthError) as http_error:
            client.submit(synth_video.path)
        assert http_error.value.status == 401 and "API key" in http_error.value.detail
        with pytest.raises(AuthError, match="API key"):
            list(client.stream(synth_video.path))  # the WebSocket closes with 1008


def test_bad_inputs_raise_with_the_servers_message(
    client: PoseClient, not_a_video: Path, synth_video: SynthVideo, tmp_path: Path
) -> None:
    with pytest.raises(BadRequest) as refused:
        client.submit(not_a_video)
    assert refused.value.status == 415 and refused.value.kind == "unsupported_media"
    assert "not a readable video" in str(refused.value)
    with pytest.raises(SourceError, match="no such file"):
        client.submit(tmp_path / "missing.mp4")
    with pytest.raises(BadRequest, match="no job"):
        client.job("0" * 32).status()
    with pytest.raises(StreamError) as bad_config:
        list(client.stream(synth_video.path, model="no-such-model"))
    assert bad_config.value.kind == "invalid_config"
    with pytest.raises(SourceError, match="RGB uint8"):
        list(client.stream(iter([np.zeros((8, 8), dtype=np.uint8)])))


def test_a_job_and_a_live_stream_end_to_end_on_a_real_server(
    server: ServerProcess, synth_video: SynthVideo
) -> None:
    """The shared real server (no keys): the real models answer what the SDK sends."""
    with PoseClient(server.base) as client:
        job = client.submit(synth_video.path, boxes=synth_video.boxes())
        assert job.wait(poll_s=0.2).status == "done"
        result = job.result()
        assert [len(f.persons) for f in result.frames] == [len(b) for b in synth_video.boxes().values()]
        events = list(client.stream(synth_video.path, lookahead=0))
    results = [e for e in events if isinstance(e, FrameResult)]
    assert [r.frame_id for r in results] == list(range(synth_video.frames))
    assert isinstance(events[-1], StreamEnded) and events[-1].message.dropped == 0
