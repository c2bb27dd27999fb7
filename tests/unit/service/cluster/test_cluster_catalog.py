"""The API node's model list follows its workers' reports, joint labels included."""

from __future__ import annotations

from pathlib import Path

from tdmi.protocol import WorkerModelPublic, WorkerPublic
from tdmi.service.cluster.catalog import ClusterCatalog
from tdmi.service.weights.catalogue import WeightsStore


def _worker(*models: WorkerModelPublic) -> WorkerPublic:
    return WorkerPublic(
        worker_id="w1",
        device="cpu",
        backend="torch",
        models=list(models),
        streams=0,
        max_streams=2,
        jobs=0,
        max_jobs=1,
        queue_depth=0,
        frames=0,
        batches={},
        started_at=0.0,
        heartbeat_at=0.0,
    )


def test_a_worker_serving_a_checkpoint_with_its_own_joints_labels_the_api_nodes_model(tmp_path: Path) -> None:
    """An MMPose COCO file in a PoseTrack preset: the worker says coco-17, so must the API node."""
    catalog = ClusterCatalog(["tdmi-tiny"], WeightsStore(tmp_path))
    assert catalog.get("tdmi-tiny").preset.layout.name == "posetrack-17"
    catalog.update([_worker(WorkerModelPublic(name="tdmi-tiny", checkpoint="x.pth", joints="coco-17"))])
    assert catalog.get("tdmi-tiny").preset.layout.name == "coco-17"
    catalog.update([_worker(WorkerModelPublic(name="tdmi-tiny", checkpoint=None))])  # an older worker
    assert catalog.get("tdmi-tiny").preset.layout.name == "posetrack-17"
    catalog.update([_worker(WorkerModelPublic(name="tdmi-tiny", checkpoint=None, joints="no-such"))])
    assert catalog.get("tdmi-tiny").preset.layout.name == "posetrack-17"
