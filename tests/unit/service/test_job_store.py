"""The SQLite job store: persistence, status rules, requeue after a stop, threads, files."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tdmi.service.jobs import JobStore, new_job_id, write_json_atomic


class _Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> _Clock:
    return _Clock()


@pytest.fixture
def store(tmp_path: Path, clock: _Clock) -> Iterator[JobStore]:
    store = JobStore(tmp_path / "data", clock=clock)
    yield store
    store.close()


def test_create_and_get(store: JobStore, clock: _Clock) -> None:
    options = {"boxes": {"0": [[1, 2, 3, 4, 0.9]]}, "lookahead": 2, "render": True}
    job = store.create("tdmi-tiny", options, input_path="/x/in.mp4", frames_total=30)
    assert len(job.id) == 32 and int(job.id, 16) >= 0
    assert (job.status, job.model, job.options, job.frames_done, job.frames_total) == (
        "queued", "tdmi-tiny", options, 0, 30,
    )  # fmt: skip
    assert job.input_path == Path("/x/in.mp4") and job.result_path is None and job.error is None
    assert job.created_at.timestamp() == clock.now and job.created_at.tzinfo is not None
    assert store.get(job.id) == job
    assert store.get(new_job_id()) is None


def test_jobs_survive_reopening(tmp_path: Path, clock: _Clock) -> None:
    first = JobStore(tmp_path, clock=clock)
    job = first.create("m", {"render": False})
    first.mark_running(job.id)
    first.update_progress(job.id, 7, 9)
    first.close()

    reopened = JobStore(tmp_path, clock=clock)
    stored = reopened.get(job.id)
    assert stored is not None
    assert (stored.status, stored.frames_done, stored.frames_total, stored.options) == (
        "running", 7, 9, {"render": False},
    )  # fmt: skip
    assert reopened.db_path.name == "jobs.sqlite3"
    with contextlib.closing(sqlite3.connect(reopened.db_path)) as other:  # WAL is a property of the file
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    reopened.close()


def test_status_moves_one_way(store: JobStore, clock: _Clock) -> None:
    job = store.create("m")
    assert not store.update_progress(job.id, 1)  # not running yet
    assert store.mark_running(job.id, frames_total=10)
    assert not store.mark_running(job.id)  # taken once only
    clock.now += 5
    assert store.update_progress(job.id, 4)
    assert store.mark_done(job.id, video_path=store.video_path(job.id))
    done = store.get(job.id)
    assert done is not None and done.finished
    assert (done.status, done.frames_done, done.frames_total) == ("done", 4, 10)
    assert done.result_path == store.result_path(job.id) and done.video_path == store.video_path(job.id)
    assert done.updated_at.timestamp() == clock.now
    assert not store.mark_failed(job.id, "late") and not store.mark_cancelled(job.id)
    assert not store.mark_running(new_job_id())


def test_cancel_only_unfinished_jobs(store: JobStore) -> None:
    queued, running, failed = store.create("m"), store.create("m"), store.create("m")
    store.mark_running(running.id)
    store.mark_failed(failed.id, "decoder said no")

    assert store.mark_cancelled(queued.id) and store.mark_cancelled(running.id)
    assert not store.mark_cancelled(failed.id) and not store.mark_cancelled(queued.id)
    # a cancelled job tells its worker to stop, and its late result is refused
    assert not store.update_progress(running.id, 3)
    assert not store.mark_done(running.id)
    assert not store.mark_running(queued.id)
    statuses = {job.id: (job.status, job.error) for job in store.list()}
    assert statuses == {
        queued.id: ("cancelled", None),
        running.id: ("cancelled", None),
        failed.id: ("failed", "decoder said no"),
    }


def test_requeue_interrupted_jobs(tmp_path: Path, clock: _Clock) -> None:
    store = JobStore(tmp_path, clock=clock)
    interrupted, waiting, finished = store.create("m"), store.create("m"), store.create("m")
    for job in (interrupted, finished):
        store.mark_running(job.id)
    store.update_progress(interrupted.id, 5, 8)
    store.mark_done(finished.id)
    store.close()  # the server stops

    restarted = JobStore(tmp_path, clock=clock)
    requeued = restarted.requeue_interrupted()
    assert [(job.id, job.status, job.frames_done) for job in requeued] == [(interrupted.id, "queued", 0)]
    assert [job.id for job in restarted.list(status="queued")] == [interrupted.id, waiting.id]
    assert restarted.requeue_interrupted() == []
    restarted.close()


def test_list_orders_oldest_first_and_filters(store: JobStore, clock: _Clock) -> None:
    ids = []
    for _ in range(4):
        ids.append(store.create("m").id)
        clock.now += 1
    store.mark_running(ids[1])
    assert [job.id for job in store.list()] == ids
    assert [job.id for job in store.list(status="queued", limit=2)] == [ids[0], ids[2]]
    assert [job.id for job in store.list(status="running")] == [ids[1]]


def test_concurrent_updates_from_threads(store: JobStore) -> None:
    jobs = [store.create("m") for _ in range(8)]
    for job in jobs:
        store.mark_running(job.id)
    errors: list[BaseException] = []

    def work(job_id: str) -> None:
        try:
            for frame in range(1, 51):
                assert store.update_progress(job_id, frame, 50)
                assert store.get(job_id) is not None
            assert store.mark_done(job_id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(job.id,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert {(job.status, job.frames_done) for job in store.list()} == {("done", 50)}


def test_delete_finished_older_than_removes_rows_and_files(store: JobStore, clock: _Clock) -> None:
    old_id = new_job_id()  # the API saves the upload first, then creates the job
    upload = store.upload_path(old_id, ".mp4")
    upload.write_bytes(b"video")
    old = store.create("m", input_path=upload, job_id=old_id)
    recent, active = store.create("m"), store.create("m")
    for job in (old, recent, active):
        store.mark_running(job.id)
    store.mark_done(old.id, video_path=store.video_path(old.id))
    write_json_atomic(store.result_path(old.id), {"frames": []})
    store.video_path(old.id).write_bytes(b"mp4")
    clock.now += 3600
    store.mark_cancelled(recent.id)
    clock.now += 10

    deleted = store.delete_finished_older_than(60)
    assert [job.id for job in deleted] == [old.id]
    assert store.get(old.id) is None and store.get(recent.id) is not None and store.get(active.id) is not None
    assert not upload.exists() and not store.result_path(old.id).exists()
    assert not store.video_path(old.id).exists()


def test_paths_refuse_ids_that_could_leave_the_data_dir(store: JobStore) -> None:
    job_id = new_job_id()
    assert store.result_path(job_id) == store.data_dir / "results" / f"{job_id}.json"
    assert store.video_path(job_id).parent == store.data_dir / "videos"
    assert store.upload_path(job_id, ".webm").name == f"{job_id}.webm"
    for bad in ("../../etc/passwd", job_id.upper(), job_id[:-1], ""):
        with pytest.raises(ValueError, match="invalid job id"):
            store.result_path(bad)
    with pytest.raises(ValueError, match="suffix"):
        store.upload_path(job_id, "/../x")
    with pytest.raises(ValueError, match="invalid job id"):
        store.create("m", job_id="not-hex")


def test_options_must_be_json(store: JobStore) -> None:
    with pytest.raises(ValueError, match="plain JSON"):
        store.create("m", {"boxes": {1, 2}})
    with pytest.raises(ValueError, match="plain JSON"):
        store.create("m", {"score": float("nan")})
    assert store.list() == []


def test_write_json_atomic_replaces_whole_files(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    write_json_atomic(path, {"frames": [1, 2]})
    write_json_atomic(path, {"frames": [3]})
    assert json.loads(path.read_text()) == {"frames": [3]}
    with pytest.raises(ValueError):
        write_json_atomic(path, {"frames": [float("nan")]})  # never invalid JSON on disk
    assert json.loads(path.read_text()) == {"frames": [3]}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]  # no temporary left behind
