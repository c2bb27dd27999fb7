"""``python -m bench cluster`` runs end to end on tiny settings (a real redis-server, two clusters of
real processes and an embedded server) and its JSON holds what BENCHMARKS.md quotes.

Performance is measured, not tested: the numbers are checked for presence, sign and internal
consistency (the ratios are the ratios of the reported rates), never against targets.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.redis, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_cluster_bench_reports_scaling_and_extra_latency() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "cluster", "--jobs", "2", "--frames", "6", "--rounds", "1",
         "--stream-frames", "6", "--fps", "5", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["bench"] == "cluster" and report["command"].startswith("python -m bench cluster")
    assert "1 thread(s) in every server process" in report["device"]
    settings = report["settings"]
    assert settings["jobs_per_round"] == 2 and settings["frames_per_job"] == 6
    assert settings["person_frames_per_job"] > 0

    one, two = report["one_worker"], report["two_workers"]
    assert (one["workers"], two["workers"]) == (1, 2)
    for row in (one, two):
        assert row["jobs"] == 2 and len(row["seconds_per_round"]) == 1
        assert sum(row["jobs_per_worker"].values()) == 2  # every timed job is found in Redis
        for key in ("seconds", "jobs_per_s", "frames_per_s", "person_frames_per_s"):
            assert _positive(row[key]), (row, key)
        assert row["frames_per_s"] == pytest.approx(row["jobs_per_s"] * 6)
    assert set(one["jobs_per_worker"]) == {"w1"} and set(two["jobs_per_worker"]) == {"w1", "w2"}
    assert report["scaling"] == pytest.approx(two["jobs_per_s"] / one["jobs_per_s"])

    for mode in ("stream_embedded", "stream_cluster"):
        stream = report[mode]
        assert stream["frames_answered"] + stream["frames_dropped"] == 6, stream
        assert all(_positive(stream["latency_ms"][q]) for q in ("p50", "p95", "p99")), stream
    embedded, cluster = report["stream_embedded"]["latency_ms"], report["stream_cluster"]["latency_ms"]
    assert report["extra_latency_ms"] == pytest.approx({q: cluster[q] - embedded[q] for q in ("p50", "p95")})


def test_cluster_bench_rejects_a_bad_count() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "cluster", "--jobs", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "--jobs: must be at least 1, got 0" in done.stderr
