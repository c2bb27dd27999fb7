"""Placing live streams: the least loaded worker that serves the stream's model."""

from __future__ import annotations

from tdmi.protocol import WorkerModelPublic, WorkerPublic
from tdmi.service.cluster.registry import least_loaded


def _worker(worker_id: str, streams: int, depth: int = 0, model: str = "tdmi-tiny") -> WorkerPublic:
    return WorkerPublic(
        worker_id=worker_id,
        device="cpu",
        backend="torch",
        models=[WorkerModelPublic(name=model, checkpoint=None)],
        streams=streams,
        max_streams=2,
        jobs=0,
        max_jobs=1,
        queue_depth=depth,
        frames=0,
        batches={},
        started_at=0.0,
        heartbeat_at=0.0,
    )


def test_a_new_stream_goes_to_the_least_loaded_worker_that_serves_its_model() -> None:
    workers = [
        _worker("a", 1),
        _worker("b", 0, depth=3),
        _worker("c", 0),
        _worker("d", 0, model="hrnet-tiny"),
    ]
    assert least_loaded(workers, "tdmi-tiny").worker_id == "c"  # type: ignore[union-attr]
    assert least_loaded(workers, "tdmi-tiny", frozenset({"c"})).worker_id == "b"  # type: ignore[union-attr]
    assert least_loaded(workers, "hrnet-tiny").worker_id == "d"  # type: ignore[union-attr]
    assert least_loaded([_worker("full", 2)], None) is None  # at max_streams
    assert least_loaded(workers, "unknown") is None
