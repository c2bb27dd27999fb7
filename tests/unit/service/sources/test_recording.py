"""A recorded source's files: written by capture hour, read back by time range in the job result
formats, bounded in memory when the disk is slow, refused on a full disk, and swept by age."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tdmi.protocol import PersonPose, SkeletonPublic
from tdmi.protocol.stream import ResultMessage
from tdmi.service.auth import Caller
from tdmi.service.config import Settings
from tdmi.service.errors import ApiError
from tdmi.service.jobs.formats import render_result
from tdmi.service.metrics import ServiceMetrics
from tdmi.service.sources.recording import (
    RecordingMeta,
    Recordings,
    RecordingWriter,
    TooManyFrames,
    read_range,
    recording_result,
    sweep_recordings,
)

HOUR = datetime(2026, 12, 6, 10, tzinfo=UTC).timestamp()  # 10:00 UTC
SOURCE_ID = "0123456789abcdef0123456789abcdef"
SKELETON = SkeletonPublic(layout="two", joints=["a", "b"], edges=[(0, 1)], flip_pairs=[])
SIZE = (480, 640)  # height, width


def _result(frame_id: int, at: float) -> ResultMessage:
    person = PersonPose(track_id=1, box=(1, 2, 11, 22), box_score=0.9, keypoints=[(3, 4, 0.5), (5, 6, 1.0)])
    return ResultMessage(frame_id=frame_id, timestamp=at, persons=[person], latency_ms=1.0)


def _writer(
    folder: Path, dropped: Counter[str], min_free_bytes: int = 0, capacity: int = 64
) -> RecordingWriter:
    folder.mkdir(parents=True, exist_ok=True)
    return RecordingWriter(folder, min_free_bytes, lambda why: dropped.update([why]), capacity)


def _record(writer: RecordingWriter, times: list[float], first_id: int = 1) -> None:
    for frame_id, at in enumerate(times, first_id):
        result = _result(frame_id, at)
        writer.append(result, result.model_dump_json(), SIZE)


def test_results_go_to_the_file_of_their_capture_hour_and_come_back_by_range(tmp_path: Path) -> None:
    dropped: Counter[str] = Counter()
    writer = _writer(tmp_path, dropped)
    writer.start()
    times = [HOUR + 3599.0, HOUR + 3599.5, HOUR + 3600.0, HOUR + 3600.5]  # across 11:00
    _record(writer, times)
    writer.stop()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["20261206T10.jsonl", "20261206T11.jsonl"]
    assert not dropped

    frames = read_range(tmp_path, HOUR + 3599.5, HOUR + 3600.0, max_frames=10)
    assert [f.result.frame_id for f in frames] == [2, 3]
    assert [f.at for f in frames] == times[1:3]
    assert frames[0].result.persons[0].keypoints[1] == (5, 6, 1.0)
    assert (frames[0].height, frames[0].width) == SIZE
    with pytest.raises(TooManyFrames):
        read_range(tmp_path, HOUR, HOUR + 7200, max_frames=3)


def test_each_run_of_a_moved_source_writes_its_own_files_and_a_range_reads_them_all(tmp_path: Path) -> None:
    """A cluster's source that moved: the worker that lost it and its successor each append to files
    of their own run, never into one file together; reading back interleaves them by capture time."""
    first, second = (RecordingWriter(tmp_path, 0, lambda why: None, run=run) for run in (1, 2))
    first.start()
    second.start()
    _record(first, [HOUR + 1.0, HOUR + 2.0, HOUR + 3600.5])
    _record(second, [HOUR + 2.5, HOUR + 3.0], first_id=10**9 + 1)
    first.stop()
    second.stop()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "20261206T10.run1.jsonl",
        "20261206T10.run2.jsonl",
        "20261206T11.run1.jsonl",
    ]
    frames = read_range(tmp_path, HOUR, HOUR + 3601, max_frames=10)
    assert [f.result.frame_id for f in frames] == [1, 2, 10**9 + 1, 10**9 + 2, 3]
    assert [f.at for f in frames] == sorted(f.at for f in frames)


def test_a_line_cut_short_is_left_out(tmp_path: Path) -> None:
    writer = _writer(tmp_path, Counter())
    writer.start()
    _record(writer, [HOUR + 1, HOUR + 2])
    writer.stop()
    path = tmp_path / "20261206T10.jsonl"
    with path.open("a") as file:
        file.write('{"at": 1, "width"')  # a crash in the middle of a line
    assert [f.result.frame_id for f in read_range(tmp_path, HOUR, HOUR + 10, 10)] == [1, 2]


def test_a_disk_slower_than_the_camera_loses_lines_not_memory(tmp_path: Path) -> None:
    dropped: Counter[str] = Counter()
    writer = _writer(tmp_path, dropped, capacity=16)  # not started: a disk that does not move
    _record(writer, [HOUR + i / 100 for i in range(1000)])
    assert writer.waiting() == 16 and dropped == {"behind": 1000 - 16}
    writer.start()  # the disk comes back: what waited is written
    writer.stop()
    written = read_range(tmp_path, HOUR, HOUR + 3599, 2000)
    assert [f.result.frame_id for f in written] == list(range(1, 17))


def test_a_full_disk_is_not_written_to(tmp_path: Path) -> None:
    dropped: Counter[str] = Counter()
    writer = _writer(tmp_path, dropped, min_free_bytes=2**62)
    writer.start()
    _record(writer, [HOUR + 1, HOUR + 2, HOUR + 3])
    writer.stop()
    assert dropped == {"disk_full": 3} and list(tmp_path.iterdir()) == []


def test_a_range_is_a_job_result_in_each_format(tmp_path: Path) -> None:
    writer = _writer(tmp_path, Counter())
    writer.start()
    _record(writer, [HOUR + 0.0, HOUR + 0.1, HOUR + 0.2, HOUR + 0.3, HOUR + 0.4], first_id=7)
    writer.stop()
    meta = RecordingMeta(source_id=SOURCE_ID, owner=None, model="tdmi-tiny", skeleton=SKELETON)
    result = recording_result(meta, read_range(tmp_path, HOUR, HOUR + 1, 100))
    assert result.job_id == SOURCE_ID and result.model == "tdmi-tiny"
    assert (result.video.height, result.video.width, result.video.frames) == (*SIZE, 5)
    assert result.video.fps == pytest.approx(10.0)
    assert [f.index for f in result.frames] == [7, 8, 9, 10, 11]
    assert result.frames[0].pts == pytest.approx(HOUR)
    coco = render_result(result, "coco")
    assert [e["image_id"] for e in coco] == [7, 8, 9, 10, 11] and coco[0]["bbox"] == [1, 2, 10, 20]
    assert len(render_result(result, "posetrack")["annotations"]) == 5
    empty = recording_result(meta, [])
    assert empty.frames == [] and empty.video.fps == 0.0


def test_the_sweep_removes_old_files_and_a_deleted_sources_folder_with_its_last(tmp_path: Path) -> None:
    now = time.time()
    old = now - 7200
    for source in ("a" * 32, "b" * 32):
        folder = tmp_path / source
        folder.mkdir()
        for name, mtime in (("source.json", old), ("20261206T08.jsonl", old), ("20261206T10.jsonl", now)):
            (folder / name).write_text("{}\n")
            os.utime(folder / name, (mtime, mtime))
    assert sweep_recordings(tmp_path, now - 3600, recording={"a" * 32}).files == 2
    assert sorted(p.name for p in (tmp_path / ("b" * 32)).iterdir()) == ["20261206T10.jsonl", "source.json"]

    swept = sweep_recordings(tmp_path, now + 1, recording={"a" * 32})
    assert (swept.files, swept.folders) == (2, 1)
    assert [p.name for p in tmp_path.iterdir()] == ["a" * 32]  # still recording: its folder stays
    assert [p.name for p in (tmp_path / ("a" * 32)).iterdir()] == ["source.json"]


def test_a_folder_just_made_for_a_new_source_is_not_swept(tmp_path: Path) -> None:
    folder = tmp_path / SOURCE_ID
    folder.mkdir()
    (folder / "source.json").write_text("{}")
    assert sweep_recordings(tmp_path, time.time() - 1, recording=set()).folders == 0
    assert folder.exists()


def test_results_are_the_owners_and_bounded(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, source_results_max_s=600, source_results_max_frames=3)
    recordings = Recordings(settings, ServiceMetrics())
    alice, bob = Caller(owner="alice"), Caller(owner="bob")

    async def scenario() -> None:
        meta = RecordingMeta(source_id=SOURCE_ID, owner="alice", model="tdmi-tiny", skeleton=SKELETON)
        writer = await recordings.writer(meta)
        writer.start()
        _record(writer, [HOUR + 1, HOUR + 2, HOUR + 3, HOUR + 4])
        await asyncio.to_thread(writer.stop)
        answer = await recordings.results(SOURCE_ID, alice, HOUR + 2, HOUR + 4)
        assert [f.index for f in answer.frames] == [2, 3, 4]
        admin = await recordings.results(SOURCE_ID, Caller(owner="root", admin=True), HOUR, HOUR + 1.5)
        assert [f.index for f in admin.frames] == [1]
        refusals = [
            (bob, SOURCE_ID, HOUR, HOUR + 10, 404),  # another key's recording: unknown
            (alice, "f" * 32, HOUR, HOUR + 10, 404),  # nothing recorded
            (alice, "../" + SOURCE_ID, HOUR, HOUR + 10, 404),  # no source id
            (alice, SOURCE_ID, HOUR + 10, HOUR, 422),  # backwards
            (alice, SOURCE_ID, HOUR, HOUR + 601, 422),  # longer than source_results_max_s
            (alice, SOURCE_ID, HOUR, HOUR + 10, 422),  # 4 frames > source_results_max_frames
        ]
        for caller, source_id, start, end, status in refusals:
            with pytest.raises(ApiError) as refused:
                await recordings.results(source_id, caller, start, end)
            assert refused.value.status == status, (source_id, start, end)

    asyncio.run(scenario())
