"""``GET /v1/workers`` in embedded mode: the server describes itself as its one worker."""

from __future__ import annotations

import httpx

from tests.helpers.server import ServerProcess


def test_embedded_server_lists_itself_as_its_worker(server: ServerProcess) -> None:
    listing = httpx.get(f"{server.base}/v1/workers").json()
    assert listing["mode"] == "embedded"
    (worker,) = listing["workers"]
    assert worker["worker_id"] == "embedded" and worker["device"] == "cpu"
    assert {m["name"] for m in worker["models"]} == {"tdmi-tiny", "hrnet-w32-256x192"}
    assert worker["streams"] == 0 and worker["max_streams"] == 4
