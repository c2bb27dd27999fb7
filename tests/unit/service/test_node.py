"""The node seam: readiness as the routes see it, and routes that reach the node only through deps."""

from __future__ import annotations

import re
from pathlib import Path

from tdmi.service.nodes.node import Readiness

SERVICE = Path(__file__).parents[3] / "tdmi" / "service"


def test_readiness_reports_failures_and_stays_shut_down() -> None:
    readiness = Readiness("loading models")
    readiness.failed(ValueError("unknown model 'x'"))
    assert readiness.reason == "unknown model 'x'"  # a user's mistake reads as it is
    readiness.failed(RuntimeError("CUDA is not available"))
    assert readiness.reason == "RuntimeError: CUDA is not available"
    readiness.set(None)
    assert readiness.reason is None and readiness.accepting
    readiness.shut_down()
    readiness.set(None)  # e.g. Redis answering again while the node stops
    assert readiness.reason == "shutting down" and not readiness.accepting


def test_only_start_up_and_deps_touch_the_apps_state() -> None:
    """Routes get the typed node through ``tdmi.service.deps``; nothing else reads ``app.state``."""
    touching = {
        str(path.relative_to(SERVICE))
        for path in SERVICE.rglob("*.py")
        if re.search(r"\bapp\.state\b|\.state\.\w+", path.read_text())
    }
    assert touching == {"main.py", "deps.py"}
