"""Video jobs: their durable state (SQLite) and result files."""

from tdmi.service.jobs.store import FINISHED, JobRecord, JobStatus, JobStore, new_job_id, write_json_atomic

__all__ = ["FINISHED", "JobRecord", "JobStatus", "JobStore", "new_job_id", "write_json_atomic"]
