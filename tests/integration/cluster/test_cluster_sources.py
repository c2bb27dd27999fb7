"""Camera sources in a cluster: real redis-server, real API nodes and workers as processes, a real
RTSP camera (GStreamer's RTSP server on loopback). A source runs on one worker under a lease; it
moves when that worker is SIGKILLed, its recording going on, and it outlives the API node it was
added through, whose successor serves its overlay."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis as redis_client
from websockets.sync.client import ClientConnection, connect

from tdmi.service.sources.hosted import RUN_FRAME_IDS
from tests.helpers.cameras import RtspCamera
from tests.helpers.mjpeg import mjpeg_parts
from tests.helpers.server import ServerProcess
from tests.helpers.waits import until
from tests.integration.cluster.conftest import Cluster

pytestmark = pytest.mark.slow  # an API node, workers and a camera of their own: a minute or more

SOURCE_ENV = {"TDMI_SOURCE_ALLOWED_NETWORKS": "127.0.0.1/32"}  # the camera listens on loopback
Message = dict[str, Any]


@pytest.fixture
def camera() -> Iterator[RtspCamera]:
    with RtspCamera(fps=10, user="viewer", password="s3cret-pw") as camera:
        yield camera


def _add(api: ServerProcess, url: str, record: bool = False) -> Message:
    body = {"url": url, "lookahead": 1, "record": record}
    reply = httpx.post(f"{api.base}/v1/sources", json=body, timeout=30)
    assert reply.status_code == 201, reply.text
    created: Message = reply.json()
    return created


def _info(api: ServerProcess, source_id: str) -> Message:
    reply = httpx.get(f"{api.base}/v1/sources/{source_id}", timeout=10)
    assert reply.status_code == 200, reply.text
    info: Message = reply.json()
    return info


def _read_until(ws: ClientConnection, out: list[Message], done: Callable[[list[Message]], bool]) -> None:
    """The viewer's messages into ``out`` until ``done`` holds of them."""
    while not done(out):
        out.append(json.loads(ws.recv(timeout=120)))


def _results(messages: list[Message]) -> int:
    return sum(m["type"] == "result" for m in messages)


def _live_source(
    cluster: Cluster, camera: RtspCamera, record: bool = False
) -> tuple[ServerProcess, str, redis_client.Redis]:
    """A source added on the cluster's first API node, live on one of its workers."""
    api = cluster.apis[0]
    created = _add(api, camera.url, record)
    assert "s3cret-pw" not in json.dumps(created)
    source_id = created["source_id"]
    until(lambda: _info(api, source_id)["status"] == "live", "the source live on a worker", timeout=180)
    return api, source_id, redis_client.Redis.from_url(cluster.redis_url)


def test_a_source_whose_worker_is_killed_goes_on_on_the_other_worker(
    make_cluster: Callable[..., Cluster], camera: RtspCamera
) -> None:
    cluster = make_cluster(**SOURCE_ENV)
    cluster.start_api()
    cluster.start_worker("w1")
    cluster.start_worker("w2")
    cluster.wait_workers({"w1", "w2"})
    added_at = time.time()
    api, source_id, redis = _live_source(cluster, camera, record=True)
    running = redis.get(f"tdmi:source:{source_id}:lease").decode()
    other_id = _add(api, camera.url)["source_id"]  # goes to the less loaded worker: the other one
    until(lambda: redis.exists(f"tdmi:source:{other_id}:lease"), "the second source taken", timeout=60)
    assert redis.get(f"tdmi:source:{other_id}:lease").decode() != running
    survivor = ({"w1", "w2"} - {running}).pop()
    messages: list[Message] = []
    with connect(f"{api.ws_base}/v1/sources/{source_id}/results", open_timeout=30) as ws:
        _read_until(ws, messages, lambda m: _results(m) >= 5)
        cluster.workers[running].stop(signal.SIGKILL)
        killed_at = len(messages)

        def results_after_the_move(seen: list[Message]) -> bool:
            moved = [i for i, m in enumerate(seen) if m["type"] == "status" and m["status"] == "reconnecting"]
            return bool(moved) and _results(seen[moved[0] :]) >= 5

        _read_until(ws, messages, results_after_the_move)
    assert messages[0]["type"] == "status"
    after_kill = messages[killed_at:]
    (moved,) = [m for m in after_kill if m["type"] == "status" and m["status"] == "reconnecting"]
    assert survivor in moved["detail"]
    moved_at = after_kill.index(moved)
    assert _results(after_kill[moved_at:]) >= 5  # results again, from the other worker
    results = [m["frame_id"] for m in messages if m["type"] == "result"]
    assert results[:5] == sorted(results[:5])  # in order on the first worker
    assert redis.get(f"tdmi:source:{source_id}:lease").decode() == survivor
    # the camera may end the new worker's first session while it drops the killed worker's: the
    # source reconnects by itself, so its state is looked at until it is live again
    until(lambda: _info(api, source_id)["status"] == "live", "live on the other worker", timeout=60)
    info = _info(api, source_id)
    assert info["frames_processed"] > 0
    assert "s3cret-pw" not in json.dumps(info) and "s3cret-pw" not in cluster.workers[survivor].log()
    # the worker's own /metrics counts the two sources it runs now
    until(
        lambda: (
            'tdmi_sources{state="live"} 2.0' in httpx.get(f"{cluster.workers[survivor].base}/metrics").text
        ),
        "both sources counted live on the surviving worker",
        timeout=30,
    )
    # one recording across the move, read back through the API node: both runs, ids unique
    recorded = httpx.get(
        f"{api.base}/v1/sources/{source_id}/results", params={"from": added_at}, timeout=30
    ).json()
    indices = [frame["index"] for frame in recorded["frames"]]
    assert recorded["job_id"] == source_id and len(indices) == len(set(indices))
    second_run = [i > RUN_FRAME_IDS for i in indices]  # numbered after the first run's
    assert second_run == sorted(second_run) and 0 < sum(second_run) < len(indices)
    files = (cluster.data_dir / "sources" / source_id).glob("*.jsonl")
    assert {path.name.split(".")[1] for path in files} == {"run1", "run2"}  # each run its own files


def test_a_restarted_api_node_keeps_the_source_and_delete_stops_it_on_its_worker(
    make_cluster: Callable[..., Cluster], camera: RtspCamera
) -> None:
    cluster = make_cluster(**SOURCE_ENV)
    cluster.start_api()
    worker = cluster.start_worker("w1")
    cluster.wait_workers({"w1"})
    first, source_id, redis = _live_source(cluster, camera)
    processed = _info(first, source_id)["frames_processed"]
    first.stop(signal.SIGKILL)  # nothing of the source lived in the API node
    cluster.apis.remove(first)
    api = cluster.start_api()
    listed = httpx.get(f"{api.base}/v1/sources", timeout=10).json()["sources"]
    assert [s["source_id"] for s in listed] == [source_id]
    assert listed[0]["url"] == camera.url.replace("viewer:s3cret-pw@", "")  # shown without credentials
    until(
        lambda: _info(api, source_id)["frames_processed"] > processed + 10, "the source still processing", 120
    )
    # the overlay, drawn on the worker while someone watches, through the new API node
    for head, body in mjpeg_parts(f"{api.base}/v1/sources/{source_id}/overlay", 2, timeout=60):
        assert b"image/jpeg" in head and body.startswith(b"\xff\xd8") and body.endswith(b"\xff\xd9")
    overlay_keys = (f"tdmi:source:{source_id}:overlay:watched", f"tdmi:source:{source_id}:overlay")
    until(lambda: not redis.exists(*overlay_keys), "nothing drawn or kept once nobody watches", 30)
    messages: list[Message] = []
    with connect(f"{api.ws_base}/v1/sources/{source_id}/results", open_timeout=30) as ws:
        _read_until(ws, messages, lambda m: _results(m) >= 3)
        assert httpx.delete(f"{api.base}/v1/sources/{source_id}", timeout=30).status_code == 200
        _read_until(ws, messages, lambda m: m[-1]["type"] == "status" and m[-1]["status"] == "stopped")
    assert httpx.get(f"{api.base}/v1/sources/{source_id}", timeout=10).status_code == 404
    assert httpx.get(f"{api.base}/v1/sources", timeout=10).json()["sources"] == []
    until(lambda: f"source {source_id} stopped on this worker (deleted)" in worker.log(), "stopped on w1", 30)
    assert not redis.exists(f"tdmi:source:{source_id}:lease", f"tdmi:source:{source_id}:state")
    assert not redis.hexists("tdmi:sources", source_id)
    assert "s3cret-pw" not in worker.log() + api.log() + first.log()
