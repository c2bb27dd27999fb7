"""Every Redis key the cluster uses, in one place (prefix ``tdmi:``)."""

from __future__ import annotations

__all__ = [
    "JOBS_GROUP",
    "JOBS_QUEUED",
    "JOBS_STREAM",
    "SOURCES",
    "WORKERS",
    "api_node",
    "inbox",
    "job",
    "replies",
    "source_lease",
    "source_out",
    "source_overlay",
    "source_overlay_watched",
    "source_runs",
    "source_state",
    "worker",
]

JOBS_STREAM = "tdmi:jobs"  # Stream: one entry per run of a job {job: id}
JOBS_GROUP = "workers"  # its consumer group; consumers are worker ids
JOBS_QUEUED = "tdmi:jobs:queued"  # Set of job ids waiting for a worker
WORKERS = "tdmi:workers"  # Set of worker ids that registered (dead ones are pruned on read)
SOURCES = "tdmi:sources"  # Hash: camera source id -> its record (owner, URL, options), until deleted


def job(job_id: str) -> str:
    """Hash: a job's state, progress, attempts and the token of the run that owns it."""
    return f"tdmi:job:{job_id}"


def worker(worker_id: str) -> str:
    """String with a TTL: the worker's latest ``WorkerPublic`` report; gone when it stops beating."""
    return f"tdmi:worker:{worker_id}"


def inbox(worker_id: str) -> str:
    """Stream: live-stream operations (open, frames, end, close) for one worker."""
    return f"tdmi:inbox:{worker_id}"


def api_node(node_id: str) -> str:
    """String with a TTL: an API node is alive (its workers' streams are kept while it is)."""
    return f"tdmi:api:{node_id}"


def replies(node_id: str) -> str:
    """Stream: live-stream replies from workers to the API node that holds the WebSockets."""
    return f"tdmi:replies:{node_id}"


def source_lease(source_id: str) -> str:
    """String with a TTL: the worker running a camera source, renewed by that worker's beat."""
    return f"tdmi:source:{source_id}:lease"


def source_runs(source_id: str) -> str:
    """Counter: how many times a worker took the source (more than once: it moved)."""
    return f"tdmi:source:{source_id}:runs"


def source_state(source_id: str) -> str:
    """String with a TTL: the source's state and counters, written by its worker each beat."""
    return f"tdmi:source:{source_id}:state"


def source_out(source_id: str) -> str:
    """Stream, capped: a source's viewer messages (status events, results) from its worker."""
    return f"tdmi:source:{source_id}:out"


def source_overlay(source_id: str) -> str:
    """Stream, capped at a picture or two, expiring: a source's overlay JPEGs from its worker."""
    return f"tdmi:source:{source_id}:overlay"


def source_overlay_watched(source_id: str) -> str:
    """String with a TTL: some API node has overlay watchers of the source (renewed while it has)."""
    return f"tdmi:source:{source_id}:overlay:watched"
