"""The one job runner on the tiny model, the same tests over SQLite and Redis: results, the error
contract (bad input fails at once, other errors retry up to the limit), metrics labels, a clean
stop, and a full disk (waited out)."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tdmi.service.config import Settings
from tdmi.service.inference.runtime import InferenceRuntime
from tdmi.service.jobs.queue import JobQueue, NewJob
from tdmi.service.jobs.runner import JobRunner
from tdmi.service.jobs.store import JobRecord, new_job_id
from tdmi.service.loops import Loops
from tdmi.service.metrics import ServiceMetrics
from tdmi.service.streaming.factory import SessionFactory
from tests.helpers.synth import SynthVideo
from tests.integration.jobs.conftest import Backend

pytestmark = pytest.mark.slow


def _settings(data_dir: Path, checkpoint: Path) -> Settings:
    return Settings(
        models=[f"tdmi-tiny={checkpoint}"],
        detector="none",
        data_dir=data_dir,
        max_running_jobs=1,
        job_max_attempts=2,
        worker_id="runner-test",
    )


@asynccontextmanager
async def _runner(
    backend: Backend, checkpoint: Path
) -> AsyncIterator[tuple[JobQueue, JobRunner, ServiceMetrics]]:
    settings = _settings(backend.data_dir, checkpoint)
    metrics = ServiceMetrics()
    runtime = InferenceRuntime(settings, metrics)
    await runtime.start()
    sessions = SessionFactory(settings, metrics)
    queue = backend.open(consumer="runner-test")
    runner = JobRunner(queue, runtime, sessions, settings, metrics)
    runner.start(Loops(lambda loop, reason: None, settings.loop_stall_s))
    try:
        yield queue, runner, metrics
    finally:
        await runner.stop()
        sessions.close()
        await runtime.stop()
        await backend.close(queue)


async def _submit(
    queue: JobQueue, video: SynthVideo | None, *, model: str = "tdmi-tiny", junk: bool = False
) -> str:
    job_id = new_job_id()
    upload = queue.data_dir / "uploads" / f"{job_id}.mp4"
    upload.parent.mkdir(parents=True, exist_ok=True)
    if junk or video is None:
        upload.write_bytes(b"JUNK-BYTES " * 200)
        boxes: dict[str, list[list[float]]] = {}
    else:
        upload.write_bytes(video.path.read_bytes())
        boxes = {k: [[*b, 1.0] for b in v] for k, v in video.boxes().items()}
    options = {"boxes": boxes, "lookahead": None, "render": False, "filename": "clip.mp4"}
    await queue.create(NewJob(job_id, model, options, upload, video.frames if video else 1, None))
    return job_id


async def _finished(queue: JobQueue, job_id: str, timeout: float = 120) -> JobRecord:
    for _ in range(int(timeout / 0.05)):
        record = await queue.get(job_id)
        assert record is not None
        if record.finished:
            return record
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {record}")


async def _removed(path: Path) -> bool:
    """The runner removes an upload just after the job's final status is written."""
    for _ in range(2400):
        if not path.exists():
            return True
        await asyncio.sleep(0.05)
    return False


def _errors(metrics: ServiceMetrics) -> dict[str, float]:
    return {
        sample.labels["kind"]: sample.value
        for metric in metrics.errors.collect()
        for sample in metric.samples
        if sample.name == "tdmi_errors_total"
    }


def test_a_job_runs_once_and_its_upload_is_removed(
    backend: Backend, tiny_checkpoint: Path, synth_video: SynthVideo
) -> None:
    async def scenario() -> None:
        async with _runner(backend, tiny_checkpoint) as (queue, _, metrics):
            job_id = await _submit(queue, synth_video)
            record = await _finished(queue, job_id)
            assert record.status == "done" and record.attempts == 1 and record.error is None
            assert record.result_path is not None
            result = json.loads(record.result_path.read_text())
            assert [f["index"] for f in result["frames"]] == list(range(synth_video.frames))
            assert record.input_path is not None and await _removed(record.input_path)
            assert _errors(metrics) == {}

    asyncio.run(scenario())


def test_bad_input_fails_at_once_and_other_errors_retry_up_to_the_limit(
    backend: Backend, tiny_checkpoint: Path, synth_video: SynthVideo
) -> None:
    async def scenario() -> None:
        async with _runner(backend, tiny_checkpoint) as (queue, _, metrics):
            bad = await _finished(queue, await _submit(queue, None, junk=True))
            assert bad.status == "failed" and bad.attempts == 1
            assert bad.error is not None and "JUNK-BYTES" not in bad.error  # our words, not the bytes
            (media_kind,) = _errors(metrics)
            assert media_kind.startswith("job_") and media_kind != "job_gave_up"

            # a model this worker does not serve: not the input's fault, so it is tried again
            lost = await _finished(queue, await _submit(queue, synth_video, model="no-such-model"))
            assert lost.status == "failed" and lost.attempts == 3  # two runs, then the start that gave up
            assert lost.error is not None
            # our fault, not the input's: the client reads a reference, the log has the rest
            assert lost.error.startswith("gave up after 2 attempts; last: internal error (reference ")
            assert lost.input_path is not None and await _removed(lost.input_path)
            assert _errors(metrics) == {media_kind: 1.0, "job_UnknownModelError": 2.0, "job_gave_up": 1.0}

    asyncio.run(scenario())


def test_a_stop_gives_the_running_job_back_without_using_an_attempt(
    backend: Backend, tiny_checkpoint: Path, synth_video: SynthVideo
) -> None:
    async def scenario() -> None:
        async with _runner(backend, tiny_checkpoint) as (queue, runner, _):
            job_id = await _submit(queue, synth_video)
            for _ in range(2400):
                if runner.running:
                    break
                await asyncio.sleep(0.05)
            await runner.stop()
            record = await queue.get(job_id)
            assert record is not None
            if record.status != "done":  # the tiny model may have been quicker than the stop
                assert (record.status, record.attempts, record.error) == ("queued", 0, None)
                assert record.input_path is not None and record.input_path.exists()

    asyncio.run(scenario())


@pytest.fixture
def full_results_dir(backend: Backend) -> Iterator[Path]:
    """The data dir's ``results`` on a tiny tmpfs filled to the last byte (mounting needs root)."""
    results = backend.data_dir / "results"
    results.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(results)], check=False)
    if mounted.returncode != 0:
        pytest.skip("mounting a tmpfs needs root; the 507 threshold tests cover the rest")
    try:
        fd = os.open(results / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        finally:
            os.close(fd)
        yield results
    finally:
        subprocess.run(["umount", str(results)], check=True)


def test_a_full_disk_is_waited_out_and_loses_nothing_else(
    backend: Backend, full_results_dir: Path, tiny_checkpoint: Path, synth_video: SynthVideo
) -> None:
    """ENOSPC is the server's passing state (the retention sweep or an operator frees space): the
    job is given back with a retry message, without using an attempt, and done once there is space."""

    async def scenario() -> None:
        async with _runner(backend, tiny_checkpoint) as (queue, _, metrics):
            job_id = await _submit(queue, synth_video)
            for _ in range(2400):
                record = await queue.get(job_id)
                assert record is not None and not record.finished
                if record.error is not None:
                    break
                await asyncio.sleep(0.05)
            assert (
                record.error
                == "retry 1 of 20 after a transient server fault: the server's data disk is full for now"
            )
            assert sorted(p.name for p in full_results_dir.iterdir()) == ["filler"]  # no partial file
            (full_results_dir / "filler").unlink()  # space again: the same job is done
            done = await _finished(queue, job_id)
            assert (done.status, done.attempts) == ("done", 1)
            assert _errors(metrics)["job_insufficient_storage"] >= 1.0 and "job_gave_up" not in _errors(
                metrics
            )

    asyncio.run(scenario())
