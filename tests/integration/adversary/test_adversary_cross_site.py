"""Cross-site requests and DNS rebinding against a real server without API keys (the local
default): a page of another site can neither open a WebSocket nor post a job, a hostile Host
name gets nothing, and no CORS header ever invites a foreign page to read (issue 21, item 6).

The server lists one trusted origin, to show that ``TDMI_ALLOWED_ORIGINS`` opens exactly that.
"""

from __future__ import annotations

import json
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.helpers.server import ServerProcess, running_server
from tests.integration.conftest import SynthVideo

TRUSTED = "http://trusted.example:8080"
EVIL = "http://evil.example"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path_factory.mktemp("cross-site"),
        tiny_checkpoint,
        env={"TDMI_ALLOWED_ORIGINS": json.dumps([TRUSTED])},
    ) as proc:
        yield proc


def _jobs(server: ServerProcess) -> int:
    with sqlite3.connect(server.data_dir / "jobs.sqlite3") as db:
        return int(db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])


def _post_video(server: ServerProcess, video: SynthVideo, headers: dict[str, str]) -> httpx.Response:
    with video.path.open("rb") as f:
        return httpx.post(
            f"{server.base}/v1/pose",
            files={"file": ("clip.mp4", f, "video/mp4")},
            headers=headers,
            timeout=60,
        )


def _refused(reply: httpx.Response, status: int, kind: str) -> None:
    assert reply.status_code == status, reply.text
    assert reply.json()["error"] == kind and reply.headers["x-request-id"]


@pytest.mark.parametrize(
    "origin", [EVIL, "null", "http://127.0.0.1.evil.example", "https://trusted.example:8080"]
)
def test_a_websocket_from_a_foreign_page_is_refused_403_before_it_opens(
    server: ServerProcess, origin: str
) -> None:
    with pytest.raises(InvalidStatus) as refused, connect(f"{server.ws_base}/v1/stream", origin=origin):
        pass
    response = refused.value.response
    assert response.status_code == 403 and response.headers["x-request-id"]
    assert json.loads(response.body)["error"] == "cross_site"


@pytest.mark.parametrize("origin", [None, "same", TRUSTED])
def test_a_websocket_from_this_origin_a_listed_one_or_no_browser_is_served(
    server: ServerProcess, origin: str | None
) -> None:
    given = server.base if origin == "same" else origin
    with connect(f"{server.ws_base}/v1/stream", origin=given) as ws:
        ws.send(json.dumps({"type": "config"}))
        assert json.loads(ws.recv(timeout=30))["type"] == "ready"


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": EVIL},  # a plain HTML form posted from another site
        {"Origin": "null"},  # the same from a sandboxed frame
        {"Referer": f"{EVIL}/page.html"},  # a browser that sent no Origin
        {"Sec-Fetch-Site": "cross-site"},
    ],
    ids=["origin", "null-origin", "referer", "sec-fetch-site"],
)
def test_a_cross_site_upload_is_refused_and_creates_no_job(
    server: ServerProcess, synth_video: SynthVideo, headers: dict[str, str]
) -> None:
    before = _jobs(server)
    _refused(_post_video(server, synth_video, headers), 403, "cross_site")
    assert _jobs(server) == before


def test_a_cross_site_delete_is_refused_and_the_job_stays(
    server: ServerProcess, synth_video: SynthVideo
) -> None:
    job = _post_video(server, synth_video, {}).json()["job_id"]
    _refused(httpx.delete(f"{server.base}/v1/pose/{job}", headers={"Origin": EVIL}), 403, "cross_site")
    assert httpx.get(f"{server.base}/v1/pose/{job}").status_code == 200


@pytest.mark.parametrize("origin", [None, "same", TRUSTED])
def test_an_upload_from_this_origin_a_listed_one_or_no_browser_is_accepted(
    server: ServerProcess, synth_video: SynthVideo, origin: str | None
) -> None:
    headers = {} if origin is None else {"Origin": server.base if origin == "same" else origin}
    reply = _post_video(server, synth_video, headers)
    assert reply.status_code == 202, reply.text


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:{port}", "127.0.0.1.nip.io:{port}", "localhost.:{port}"]
)
def test_a_foreign_host_name_is_refused_421(server: ServerProcess, host: str) -> None:
    """DNS rebinding: a hostile name resolving to 127.0.0.1 reaches the socket, not the API."""
    given = host.format(port=server.port)
    _refused(httpx.get(f"{server.base}/v1/models", headers={"Host": given}), 421, "host_not_allowed")
    sock = socket.create_connection(("127.0.0.1", server.port))  # the name resolved to this host
    with pytest.raises(InvalidStatus) as refused, connect(f"ws://{given}/v1/stream", sock=sock):
        pass
    assert refused.value.response.status_code == 421


@pytest.mark.parametrize("host", ["localhost:{port}", "127.0.0.1:{port}", "[::1]:{port}", "LOCALHOST:{port}"])
def test_the_loopback_names_are_served(server: ServerProcess, host: str) -> None:
    reply = httpx.get(f"{server.base}/v1/models", headers={"Host": host.format(port=server.port)})
    assert reply.status_code == 200, reply.text


def test_no_cors_header_invites_a_foreign_page(server: ServerProcess) -> None:
    preflight = httpx.options(
        f"{server.base}/v1/pose",
        headers={
            "Origin": EVIL,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-api-key",
        },
    )
    read = httpx.get(f"{server.base}/v1/models", headers={"Origin": EVIL})
    assert read.status_code == 200  # a read is answered; without CORS headers the page cannot see it
    for reply in (preflight, read):
        assert not [name for name in reply.headers if name.lower().startswith("access-control-")]
