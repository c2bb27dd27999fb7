"""The server's own numbers, read from ``/metrics`` (Prometheus text) before and after a phase.

The difference of two scrapes is what happened during the phase: the batch size histogram (how
many batches of each size the batcher formed), the time per pipeline stage, the queue wait, and
the CPU time of the stages that share a thread (``tdmi_stage_cpu_seconds_total``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["Scrape", "scrape"]


@dataclass
class Scrape:
    batch_buckets: dict[float, float] = field(default_factory=dict)  # cumulative, by upper bound
    batch_sum: float = 0.0
    batch_count: float = 0.0
    stage_sum: dict[str, float] = field(default_factory=dict)  # seconds
    stage_count: dict[str, float] = field(default_factory=dict)
    queue_wait_sum: float = 0.0
    queue_wait_count: float = 0.0
    stage_cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds

    def since(self, before: Scrape) -> Scrape:
        """What was added between ``before`` and this scrape."""
        return Scrape(
            {k: v - before.batch_buckets.get(k, 0.0) for k, v in self.batch_buckets.items()},
            self.batch_sum - before.batch_sum,
            self.batch_count - before.batch_count,
            {k: v - before.stage_sum.get(k, 0.0) for k, v in self.stage_sum.items()},
            {k: v - before.stage_count.get(k, 0.0) for k, v in self.stage_count.items()},
            self.queue_wait_sum - before.queue_wait_sum,
            self.queue_wait_count - before.queue_wait_count,
            {k: v - before.stage_cpu.get(k, 0.0) for k, v in self.stage_cpu.items()},
        )

    def batch_histogram(self) -> dict[str, int]:
        """Batches per size bucket (``"<=4"``: more than the previous bound, at most 4 clips)."""
        out, previous = {}, 0.0
        for bound in sorted(self.batch_buckets):
            count = self.batch_buckets[bound] - previous
            previous = self.batch_buckets[bound]
            if count:
                label = "inf" if bound == float("inf") else f"{bound:g}"
                out[f"<={label}"] = int(count)
        return out

    @property
    def mean_batch(self) -> float:
        return self.batch_sum / self.batch_count if self.batch_count else 0.0

    @property
    def queue_wait_ms(self) -> float:
        """Mean milliseconds a frame waited in the batcher's queue."""
        return 1e3 * self.queue_wait_sum / self.queue_wait_count if self.queue_wait_count else 0.0

    def stages(self) -> dict[str, dict[str, float]]:
        """Per stage: calls, total seconds, mean milliseconds per call."""
        return {
            stage: {
                "calls": int(self.stage_count[stage]),
                "total_s": self.stage_sum[stage],
                "ms_per_call": 1e3 * self.stage_sum[stage] / self.stage_count[stage],
            }
            for stage in self.stage_sum
            if self.stage_count.get(stage)
        }


def scrape(base_url: str) -> Scrape:
    """Read the server's ``/metrics`` once."""
    text = httpx.get(f"{base_url}/metrics", timeout=30).text
    out = Scrape()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if name == "tdmi_batch_size_clips_bucket":
                out.batch_buckets[float(labels["le"])] = value
            elif name == "tdmi_batch_size_clips_sum":
                out.batch_sum = value
            elif name == "tdmi_batch_size_clips_count":
                out.batch_count = value
            elif name == "tdmi_stage_seconds_sum":
                out.stage_sum[labels["stage"]] = value
            elif name == "tdmi_stage_seconds_count":
                out.stage_count[labels["stage"]] = value
            elif name == "tdmi_queue_wait_seconds_sum":
                out.queue_wait_sum = value
            elif name == "tdmi_queue_wait_seconds_count":
                out.queue_wait_count = value
            elif name == "tdmi_stage_cpu_seconds_total":
                out.stage_cpu[labels["stage"]] = value
    return out
