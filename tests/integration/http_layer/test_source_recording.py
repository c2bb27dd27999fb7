"""``record: true`` and ``GET /v1/sources/{id}/results`` in-process, against a fake node whose
cameras are ``FakeCamera``: the real routes, ``SourceService`` and recording files in the node's
data directory, its real retention loop and ``/metrics``. The files themselves (hour rotation, a
slow disk, a full one): tests/unit/service/sources/test_recording.py."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.helpers.in_process import StartApp, TestClient
from tests.helpers.waits import until

CAMERA = "rtsp://192.168.1.20:554/stream"  # a private address: allowed by default, never dialled
ALICE, BOB = "alice-key-0123456789", "bob-key-0123456789"


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _recorded(client: TestClient, at_least: int, **headers: str) -> str:
    added = client.post("/v1/sources", json={"url": CAMERA, "record": True, "lookahead": 0}, headers=headers)
    assert added.status_code == 201, added.text
    source_id: str = added.json()["source_id"]

    def processed() -> int:
        return int(client.get(f"/v1/sources/{source_id}", headers=headers).json()["frames_processed"])

    until(lambda: processed() >= at_least, f"{at_least} frames processed", timeout=30)
    return source_id


def _results(client: TestClient, source_id: str, key: str | None = None, **params: Any) -> Any:
    headers = _auth(key) if key else {}
    return client.get(f"/v1/sources/{source_id}/results", params=params, headers=headers)


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir())


def _data_dir_gauge(client: TestClient) -> float:
    line = next(x for x in client.get("/metrics").text.splitlines() if x.startswith("tdmi_data_dir_bytes "))
    return float(line.split()[-1])


def test_a_recorded_sources_results_come_back_by_time_range_also_after_it_is_deleted(
    start_app: StartApp,
) -> None:
    client, node = start_app(source_keys="all", api_keys=[ALICE, BOB])
    since = time.time()
    source_id = _recorded(client, 8, **_auth(ALICE))
    assert client.delete(f"/v1/sources/{source_id}", headers=_auth(ALICE)).status_code == 200
    until_now = time.time()

    answer = _results(client, source_id, ALICE, **{"from": since, "to": until_now})
    assert answer.status_code == 200, answer.text
    result = answer.json()
    ids = [f["index"] for f in result["frames"]]
    assert len(ids) >= 8 and all(b - a == 1 for a, b in itertools.pairwise(ids)), ids
    times = [f["pts"] for f in result["frames"]]
    assert since <= times[0] <= times[-1] <= until_now
    assert result["job_id"] == source_id and result["model"] == "tdmi-tiny"
    assert result["video"]["frames"] == len(ids) and result["frames"][0]["persons"]
    assert result["skeleton"]["joints"]

    half = len(times) // 2  # ISO 8601 works as epoch seconds do; `to` defaults to now
    iso = datetime.fromtimestamp((times[half - 1] + times[half]) / 2, UTC).isoformat()
    later = _results(client, source_id, ALICE, **{"from": iso}).json()
    assert [f["index"] for f in later["frames"]] == ids[half:]
    coco = _results(client, source_id, ALICE, format="coco", **{"from": since}).json()
    assert sorted({e["image_id"] for e in coco}) == ids

    assert _results(client, source_id, BOB, **{"from": since}).status_code == 404  # not Bob's
    folder = node.settings.data_dir / "sources" / source_id
    recorded = _folder_bytes(folder)
    assert recorded > 0 and _data_dir_gauge(client) >= recorded


def test_a_bad_or_too_large_range_is_refused_with_a_clear_4xx(start_app: StartApp) -> None:
    client, _ = start_app(source_results_max_s=60)
    source_id = _recorded(client, 1)
    now = time.time()
    refusals = [
        ({"from": "yesterday"}, 422, "bad_time"),
        ({"from": now, "to": now - 1}, 422, "bad_range"),
        ({"from": now - 61, "to": now}, 422, "bad_range"),
        ({}, 422, "invalid_request"),  # `from` is required
    ]
    for params, status, error in refusals:
        reply = _results(client, source_id, **params)
        assert (reply.status_code, reply.json()["error"]) == (status, error), params
        assert "from" in reply.text or "to" in reply.text
    unrecorded = client.post("/v1/sources", json={"url": CAMERA}).json()["source_id"]
    assert _results(client, unrecorded, **{"from": now - 10}).status_code == 404


def test_retention_removes_a_deleted_sources_recording_and_the_gauge_drops_by_its_size(
    start_app: StartApp,
) -> None:
    client, node = start_app(job_retention_hours=0.001, job_sweep_interval_s=0.2)  # 3.6 s
    source_id = _recorded(client, 5)
    folder = node.settings.data_dir / "sources" / source_id
    assert client.delete(f"/v1/sources/{source_id}").status_code == 200
    before, recorded = _data_dir_gauge(client), _folder_bytes(folder)  # written < 3.6 s ago: still here
    assert recorded > 0 and before >= recorded

    until(lambda: not folder.exists(), "the recording swept", timeout=30)
    assert before - _data_dir_gauge(client) == recorded
    assert _results(client, source_id, **{"from": time.time() - 60}).status_code == 404
