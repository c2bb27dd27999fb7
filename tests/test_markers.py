"""A machine without redis-server skips the ``redis`` tests with the package to install; under CI
(``CI`` set, where .ci/run installs it) the same tests run and fail instead of skipping. Where a
folder or a fixture decides a marker (tests/conftest.py), its tests carry it without naming it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# each check runs pytest in a subprocess (about 5 s on 2 cores): the full suite only
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
REDIS_TESTS = "tests/deploy/test_redis_config.py"

# a test file outside tests/, run with tests/conftest.py as a plugin: only the fixture's name decides
ASKS_FOR_REDIS = """
import pytest


@pytest.fixture
def redis_server():
    return "a stand-in: the marker follows the fixture's name"


def test_asks_for_redis_server(redis_server):
    pass


def test_asks_for_nothing():
    pass
"""


def _pytest_without_redis(empty: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """pytest with a PATH that holds no redis-server (``empty``, an empty folder)."""
    base = {k: v for k, v in os.environ.items() if k != "CI"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", *args, "-rs", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env={**base, "PATH": str(empty), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_missing_redis_server_skips_with_the_package_to_install(tmp_path: Path) -> None:
    done = _pytest_without_redis(tmp_path, REDIS_TESTS)
    assert done.returncode == 0, done.stdout[-2000:]
    assert "1 skipped" in done.stdout
    assert "redis-server is not installed (apt-get install redis-server)" in done.stdout


def test_under_ci_a_missing_redis_server_fails_its_tests(tmp_path: Path) -> None:
    done = _pytest_without_redis(tmp_path, REDIS_TESTS, CI="true")
    assert done.returncode == 1, done.stdout[-2000:]
    assert "redis-server is installed by .ci/run" in done.stdout  # the test's own assertion, not a skip
    assert "skipped" not in done.stdout


def test_a_test_that_asks_for_redis_server_is_a_redis_test(tmp_path: Path) -> None:
    (tmp_path / "path").mkdir()
    (tmp_path / "suite").mkdir()
    (tmp_path / "suite" / "test_asks.py").write_text(ASKS_FOR_REDIS)
    done = _pytest_without_redis(tmp_path / "path", "-p", "tests.conftest", str(tmp_path / "suite"))
    assert done.returncode == 0, done.stdout[-2000:]
    assert "1 passed, 1 skipped" in done.stdout
    assert "redis-server is not installed" in done.stdout


def test_every_training_run_is_slow() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/training", "--collect-only", "-m", "not slow"]
        + ["-p", "no:cacheprovider", "-o", "addopts=--strict-markers"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 5, done.stdout[-2000:]  # 5: nothing selected
    deselected = re.search(r"(\d+) deselected", done.stdout)
    assert deselected is not None, done.stdout[-2000:]
    assert int(deselected[1]) >= 9  # the training runs were collected, and every one was deselected
