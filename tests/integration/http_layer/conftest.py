"""In-process tests of the HTTP and WebSocket layer: the real application around a ``FakeNode``
(tests/helpers/fake_node.py), driven through Starlette's ``TestClient``. No server process, no
model: what is tested here is the service's answers, not its poses."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.fake_node import FakeNode
from tests.helpers.in_process import StartApp, TestClient, app_client, fake_settings


@pytest.fixture
def start_app(tmp_path: Path) -> Iterator[StartApp]:
    """``start_app(jobs_run=True, models=("tdmi-tiny",), **settings)``: a started application
    around a new fake node with these settings (its own data directory), and the node; all are
    stopped after the test."""
    numbers = itertools.count()
    with ExitStack() as stack:

        def start(
            jobs_run: bool = True, models: tuple[str, ...] = ("tdmi-tiny",), **settings: Any
        ) -> tuple[TestClient, FakeNode]:
            data_dir = tmp_path / f"node-{next(numbers)}"
            node = FakeNode(fake_settings(data_dir, **settings), models=models, jobs_run=jobs_run)
            return stack.enter_context(app_client(node)), node

        yield start


@pytest.fixture
def client(start_app: StartApp) -> TestClient:
    """The application around a fake node with the default settings."""
    return start_app()[0]
