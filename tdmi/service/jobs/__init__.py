"""Video jobs: one queue contract (SQLite or Redis), one runner, one service for the HTTP layer."""

from tdmi.service.jobs.store import JobRecord, new_job_id, write_json_atomic

__all__ = ["JobRecord", "new_job_id", "write_json_atomic"]
