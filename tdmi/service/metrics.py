"""Prometheus metrics of one service instance (its own registry, so tests can run several)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest

__all__ = ["CPU_STAGES", "NO_CPU", "STAGES", "CpuSpan", "QueuedWork", "ServiceMetrics", "StageTimer"]

STAGES = ("decode", "detect", "crop", "model", "post", "encode", "send")
# the stages whose CPU time is counted where they run (``tdmi_stage_cpu_seconds_total``): those that
# share a thread with others (the event loop's; JPEG decoding in the default pool). The stages with
# threads of their own (crop: tdmi-prepare, model: tdmi-device, post: tdmi-finish) are those
# threads' CPU time, which the OS counts per thread name.
CPU_STAGES = ("receive", "decode", "buffer", "track", "encode", "send")
_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# takes one stage's time as (stage, seconds): ``ServiceMetrics.observe_stage``, or a test's list
StageTimer = Callable[[str, float], None]
# ``with cpu("stage"):`` adds the calling thread's CPU time inside the block to the stage's counter:
# ``ServiceMetrics.cpu``, or ``NO_CPU`` where nothing is counted
CpuSpan = Callable[[str], AbstractContextManager[object]]


def _no_cpu(stage: str) -> AbstractContextManager[object]:
    return nullcontext()


NO_CPU: CpuSpan = _no_cpu


class _ThreadCpu:
    """The CPU time the calling thread spends in a ``with`` block, added to ``counter``.

    ``time.thread_time`` counts this thread's CPU only, not wall time (waits are not work); it is
    one clock_gettime call, under a microsecond. The block must not await: CPU that other tasks
    spend on the event loop meanwhile would count too."""

    __slots__ = ("_counter", "_start")

    def __init__(self, counter: Counter):
        self._counter = counter
        self._start = 0.0

    def __enter__(self) -> None:
        self._start = time.thread_time()

    def __exit__(self, *exc: object) -> None:
        self._counter.inc(time.thread_time() - self._start)


class QueuedWork(Protocol):
    """What a batch's metrics read of its frames (``tdmi.service.inference.work.FrameWork``): a
    protocol, so that the metrics, which every layer uses, import none of them."""

    enqueued_at: float

    @property
    def size(self) -> int: ...


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.queue_depth = Gauge(
            "tdmi_queue_depth_frames", "frames waiting in the batcher", ["model"], registry=r
        )
        self.queue_wait = Histogram(
            "tdmi_queue_wait_seconds", "time a frame waited in the batcher", buckets=_SECONDS, registry=r
        )
        self.batch_size = Histogram(
            "tdmi_batch_size_clips",
            "clips (persons) per batch",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=r,
        )
        self.stage_seconds = Histogram(
            "tdmi_stage_seconds", "time per pipeline stage", ["stage"], buckets=_SECONDS, registry=r
        )
        stage_cpu = Counter(
            "tdmi_stage_cpu_seconds",
            "CPU time of the stages that share a thread (event loop, JPEG decoding), by stage",
            ["stage"],
            registry=r,
        )
        self._stage_cpu = {stage: stage_cpu.labels(stage) for stage in CPU_STAGES}
        self.frames = Counter("tdmi_frames_total", "frames answered", ["kind"], registry=r)
        self.frames_dropped = Counter(
            "tdmi_frames_dropped_total", "live frames dropped", ["reason"], registry=r
        )
        self.active_streams = Gauge("tdmi_active_streams", "open live streams", registry=r)
        self.active_jobs = Gauge("tdmi_active_jobs", "video jobs running", registry=r)
        self.data_dir_bytes = Gauge(
            "tdmi_data_dir_bytes",
            "bytes of the files in the data directory (jobs, uploads, results)",
            registry=r,
        )
        self.errors = Counter("tdmi_errors_total", "errors by kind", ["kind"], registry=r)
        self.sources = Gauge("tdmi_sources", "camera sources by state", ["state"], registry=r)
        self.source_frames = Counter(
            "tdmi_source_frames_total",
            "camera sources' frames: read, processed, skipped",
            ["kind"],
            registry=r,
        )
        self.source_viewers = Gauge(
            "tdmi_source_viewers",
            "viewers of camera sources: results (WebSocket), overlay (MJPEG)",
            ["kind"],
            registry=r,
        )
        self.source_viewer_dropped = Counter(
            "tdmi_source_viewer_dropped_total", "results not delivered to a slow viewer", registry=r
        )
        self.source_records_dropped = Counter(
            "tdmi_source_records_dropped_total",
            "recorded sources' results not written: writer behind the disk, disk full, write failed",
            ["reason"],
            registry=r,
        )
        ProcessCollector(registry=r)  # process_resident_memory_bytes, process_open_fds, CPU seconds

    def observe_stage(self, stage: str, seconds: float) -> None:
        self.stage_seconds.labels(stage).observe(seconds)

    def cpu(self, stage: str) -> AbstractContextManager[object]:
        """``with metrics.cpu("encode"):`` counts the block's CPU time (``CpuSpan``; a new span per
        block, so threads never share one)."""
        return _ThreadCpu(self._stage_cpu[stage])

    def observe_batch(self, batch: Sequence[QueuedWork]) -> None:
        now = time.monotonic()
        self.batch_size.observe(sum(w.size for w in batch))
        for work in batch:
            self.queue_wait.observe(now - work.enqueued_at)

    def render(self) -> bytes:
        return generate_latest(self.registry)
