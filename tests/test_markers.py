"""A machine without redis-server skips the ``redis`` tests with the package to install; under CI
(``CI`` set, where .ci/run installs it) the same tests run and fail instead of skipping."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REDIS_TESTS = "tests/deploy/test_redis_config.py"


def _pytest_without_redis(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The redis tests with a PATH that holds no redis-server (an empty folder)."""
    base = {k: v for k, v in os.environ.items() if k != "CI"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", REDIS_TESTS, "-rs", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env={**base, "PATH": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_missing_redis_server_skips_with_the_package_to_install(tmp_path: Path) -> None:
    done = _pytest_without_redis(tmp_path)
    assert done.returncode == 0, done.stdout[-2000:]
    assert "1 skipped" in done.stdout
    assert "redis-server is not installed (apt-get install redis-server)" in done.stdout


def test_under_ci_a_missing_redis_server_fails_its_tests(tmp_path: Path) -> None:
    done = _pytest_without_redis(tmp_path, CI="true")
    assert done.returncode == 1, done.stdout[-2000:]
    assert "redis-server is installed by .ci/run" in done.stdout  # the test's own assertion, not a skip
    assert "skipped" not in done.stdout
