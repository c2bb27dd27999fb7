"""Fixtures of the integration tests: a real redis-server for the session. The synthetic video,
the checkpoints and the real servers are every folder's (tests/helpers/shared_fixtures.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.redis_server import RedisServer
from tests.helpers.synth import SynthVideo, make_synth_video

__all__ = ["SynthVideo", "make_synth_video"]  # the adversary tests import them from here


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()
