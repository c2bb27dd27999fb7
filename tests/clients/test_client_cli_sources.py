"""``tdmi-client sources add|list|watch|results|rm`` against the service around a fake node whose cameras
are ``FakeCamera``: what each prints, and refusals as one line with the command line's exit codes."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tdmi.client import PoseClient
from tdmi.client.cli import EXIT_CODES, main
from tests.clients.conftest import ADMIN_KEY, API_KEY, CAMERA_URL, MAX_SOURCES
from tests.helpers.in_process import ServedApp
from tests.helpers.waits import until

FRAME_LINE = re.compile(r"frame (\d+)\t1 persons\tserver \d+ ms\tcamera to here -?\d+ ms")


def run(service: ServedApp, *args: str, key: str = ADMIN_KEY) -> int:
    return main(["--url", service.base, "--api-key", key, *args])


def test_a_camera_is_added_listed_watched_and_removed(
    camera_service: ServedApp, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(camera_service, "sources", "add", CAMERA_URL, "--lookahead", "0", "--max-fps", "20") == 0
    added = capsys.readouterr()
    source_id = added.out.strip()
    assert re.fullmatch(r"[\w-]+", source_id), added.out  # the id alone: ID=$(tdmi-client sources add ...)
    assert f"source {source_id}" in added.err and f"/v1/sources/{source_id}/overlay" in added.err

    assert run(camera_service, "sources", "watch", source_id, "--frames", "4") == 0
    watched = capsys.readouterr()
    lines = watched.out.splitlines()
    assert len(lines) == 4 and all(FRAME_LINE.fullmatch(line) for line in lines), lines
    ids = [int(FRAME_LINE.fullmatch(line)[1]) for line in lines]  # type: ignore[index]
    assert ids == sorted(set(ids))
    assert f"source {source_id}: live" in watched.err

    assert run(camera_service, "sources", "watch", source_id, "--frames", "2", "--json") == 0
    messages = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert messages[0] == {"type": "status", "source_id": source_id, "status": "live", "detail": None}
    assert [m["type"] for m in messages].count("result") == 2

    assert run(camera_service, "sources", "list") == 0
    row = capsys.readouterr().out.strip().split("\t")
    assert row[:2] == [source_id, "live"] and row[-1] == CAMERA_URL
    assert run(camera_service, "sources", "list", "--json") == 0
    [info] = json.loads(capsys.readouterr().out)
    assert info["source_id"] == source_id and info["frames_processed"] >= 6

    assert run(camera_service, "sources", "rm", source_id) == 0
    assert f"source {source_id} removed after" in capsys.readouterr().err
    assert run(camera_service, "sources", "list") == 0
    assert capsys.readouterr().out == ""


def test_a_recorded_cameras_results_are_written_as_json(
    camera_service: ServedApp, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    since = time.time()
    assert run(camera_service, "sources", "add", CAMERA_URL, "--lookahead", "0", "--record") == 0
    source_id = capsys.readouterr().out.strip()
    with PoseClient(camera_service.base, api_key=ADMIN_KEY) as client:
        until(lambda: client.sources.get(source_id).frames_processed >= 3, "frames processed", timeout=30)
    assert run(camera_service, "sources", "rm", source_id) == 0  # the recording stays
    capsys.readouterr()

    assert run(camera_service, "sources", "results", source_id, "--from", str(since)) == 0
    printed = capsys.readouterr().out
    assert printed.count("\n") == 1  # one line
    result = json.loads(printed)
    assert result["job_id"] == source_id and len(result["frames"]) >= 3
    assert all(since <= f["pts"] <= time.time() for f in result["frames"])

    out = tmp_path / "coco.json"
    start = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(since - 1))  # ISO 8601, UTC
    argv = ["--from", start, "--to", str(time.time()), "--format", "coco", "--output", str(out)]
    assert run(camera_service, "sources", "results", source_id, *argv) == 0
    assert capsys.readouterr().out == ""
    coco = json.loads(out.read_text())
    assert sorted({e["image_id"] for e in coco}) == [f["index"] for f in result["frames"]]


def test_refusals_are_one_line_with_the_exit_codes(
    camera_service: ServedApp, dead_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    def refused(argv: list[str], key: str, kind: str, message: str) -> None:
        assert run(camera_service, *argv, key=key) == EXIT_CODES[kind], argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0] and err[0].startswith("tdmi-client: "), (argv, err)

    refused(["sources", "add", CAMERA_URL], API_KEY, "bad_input", "forbidden: ")  # not an admin key
    refused(["sources", "add", "rtsp://127.0.0.1:6379/x"], ADMIN_KEY, "bad_input", "source_refused: ")
    for _ in range(MAX_SOURCES):
        assert run(camera_service, "sources", "add", CAMERA_URL) == 0
    capsys.readouterr()
    refused(["sources", "add", CAMERA_URL], ADMIN_KEY, "bad_input", "too_many_sources: limit is 2")
    refused(["sources", "rm", "nope"], ADMIN_KEY, "bad_input", "not_found: no source nope")
    refused(["sources", "watch", "nope"], ADMIN_KEY, "bad_input", "not_found: no source nope")
    refused(["sources", "results", "nope", "--from", str(time.time())], ADMIN_KEY, "bad_input", "not_found: ")
    refused(["sources", "results", "nope", "--from", "noon"], ADMIN_KEY, "bad_input", "bad_time: 'from'")
    refused(["sources", "list"], "wrong", "auth", "API key")
    refused(["sources", "watch", "nope"], "wrong", "auth", "API key")
    assert main(["--url", dead_url, "sources", "list"]) == EXIT_CODES["unreachable"]
    assert "cannot reach" in capsys.readouterr().err
