"""The browser page at ``/`` in headless Chromium (Debian's, driven by Playwright; nothing is
downloaded): a fake camera fed from a synthetic y4m video streams over the WebSocket, results
come back and skeletons are drawn on the canvas (checked in a screenshot's pixels), a video
uploaded as a job shows its result, and a camera the server pulls is added, watched and removed
(against a fake node, whose cameras are ``FakeCamera``)."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from playwright.sync_api import Page, Route, WebSocket, sync_playwright

from tdmi.protocol.overlay import track_color
from tests.clients.conftest import ADMIN_KEY, API_KEY, CAMERA_URL, SynthVideo
from tests.helpers.fake_node import FAKE_CAMERA_SIZE
from tests.helpers.in_process import ServedApp
from tests.helpers.server import ServerProcess

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"


def write_y4m(frames: list[np.ndarray], path: Path, fps: int = 25) -> Path:
    """RGB frames as a raw YUV 4:2:0 y4m file, the format of Chromium's fake camera."""
    height, width = frames[0].shape[:2]
    with path.open("wb") as f:
        f.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for image in frames:
            f.write(b"FRAME\n" + cv2.cvtColor(image, cv2.COLOR_RGB2YUV_I420).tobytes())
    return path


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.1)


def stat(page: Page, name: str) -> int:
    return int(page.text_content(f"#stat-{name}") or 0)


def track_pixels(image: np.ndarray, track_ids: set[int]) -> int:
    """Pixels within a small distance of the colour of one of ``track_ids`` (RGB screenshot)."""
    found = np.zeros(image.shape[:2], dtype=bool)
    for track_id in track_ids:
        found |= np.abs(image.astype(int) - np.array(track_color(track_id))).max(axis=2) <= 12
    return int(found.sum())


@pytest.fixture(scope="module")
def page(person_frames: list[np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    assert shutil.which(CHROMIUM) or Path(CHROMIUM).exists(), "Debian's chromium is installed by .ci/run"
    camera = write_y4m(person_frames, tmp_path_factory.mktemp("camera") / "camera.y4m")
    args = [
        "--no-sandbox", "--disable-gpu", "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={camera}", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
    ]  # fmt: skip
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        yield browser.new_page(viewport={"width": 1280, "height": 900})
        browser.close()


def test_the_page_and_its_files_are_served_with_a_strict_policy(demo_server: ServerProcess) -> None:
    index = httpx.get(f"{demo_server.base}/")
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
    policy = index.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'self'" in policy
    assert "http" not in index.text.replace('href="data:', "")  # no CDN, nothing external
    script = httpx.get(f"{demo_server.base}/web/app.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert httpx.get(f"{demo_server.base}/web/style.css").headers["content-type"].startswith("text/css")
    for name in ("missing.js", "..%2Fcli.py", ".hidden.js"):
        assert httpx.get(f"{demo_server.base}/web/{name}").status_code == 404


def test_the_live_camera_streams_and_skeletons_are_drawn_on_the_canvas(
    page: Page, demo_server: ServerProcess, tmp_path: Path
) -> None:
    errors: list[str] = []
    results: list[dict] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)

    def on_socket(ws: WebSocket) -> None:
        ws.on(
            "framereceived",
            lambda payload: results.append(json.loads(payload)) if isinstance(payload, str) else None,
        )

    page.on("websocket", on_socket)
    page.goto(f"{demo_server.base}/")
    page.fill("#api-key", API_KEY)
    page.dispatch_event("#api-key", "change")
    wait_until(lambda: page.locator("#model option").count() > 0, 20, "models listed")
    assert page.text_content("#server-status") == "ready"
    page.fill("#fps", "8")
    page.fill("#quality", "0.95")
    page.evaluate("document.querySelector('#video').style.visibility = 'hidden'")  # the overlay alone
    stage = page.locator("#stage")
    before = cv2.imdecode(np.frombuffer(stage.screenshot(), np.uint8), cv2.IMREAD_COLOR_RGB)

    page.click("#start")
    wait_until(lambda: stat(page, "results") >= 8, 40, "8 results back")
    answers = [m for m in results if m["type"] in ("result", "dropped")]
    assert results[0]["type"] == "ready" and results[0]["model"] == "tdmi-tiny"
    assert [m["frame_id"] for m in answers] == list(range(len(answers)))  # every frame answered, in order
    assert stat(page, "sent") >= stat(page, "results") and "ms" in (page.text_content("#stat-latency") or "")
    track_ids = {p["track_id"] for m in answers if m["type"] == "result" for p in m["persons"]}
    assert track_ids, "no person found in the fake camera's frames"

    # the canvas shows the latest result: screenshot until one with a person is on it
    best = 0
    deadline = time.monotonic() + 20
    while best < 150 and time.monotonic() < deadline:
        shot = cv2.imdecode(np.frombuffer(stage.screenshot(), np.uint8), cv2.IMREAD_COLOR_RGB)
        track_ids = {p["track_id"] for m in results if m["type"] == "result" for p in m["persons"]}
        best = max(best, track_pixels(shot, track_ids))
    cv2.imwrite(str(tmp_path / "stage.png"), cv2.cvtColor(shot, cv2.COLOR_RGB2BGR))
    assert best >= 150, f"no drawn skeleton in the screenshots ({best} pixels of track colours)"
    assert track_pixels(before, track_ids) == 0  # the colours are the drawing's, not the page's

    page.click("#stop")
    wait_until(lambda: (page.text_content("#stat-state") or "").startswith("closed"), 30, "stream ended")
    assert results[-1]["type"] == "ended" and results[-1]["frames"] == stat(page, "sent")
    assert stat(page, "dropped") == results[-1]["dropped"]
    assert errors == []


def test_a_video_uploaded_as_a_job_shows_progress_and_its_result(
    page: Page, demo_server: ServerProcess, synth_video: SynthVideo
) -> None:
    page.goto(f"{demo_server.base}/")
    page.fill("#api-key", API_KEY)
    page.dispatch_event("#api-key", "change")
    wait_until(lambda: page.locator("#model option").count() > 0, 20, "models listed")
    page.set_input_files("#job-file", str(synth_video.path))
    page.click("#job-submit")
    wait_until(lambda: page.locator("#job-result").is_visible(), 60, "job result shown")
    summary = page.text_content("#job-summary") or ""
    assert f"frames{synth_video.frames}" in summary.replace(" ", "")
    assert page.get_attribute("#job-progress", "value") == str(synth_video.frames)
    assert page.locator("#job-video").is_visible()  # the overlay video, fetched with the key


def test_the_models_are_listed_as_the_page_loads_with_what_the_model_knows(
    page: Page, demo_server: ServerProcess
) -> None:
    """The first answer is an empty list (a server still loading its models): the page asks again
    and fills the list without a click or a camera; the key field shows its whole placeholder."""
    asked: list[str] = []

    def loading_at_first(route: Route) -> None:
        asked.append(route.request.url)
        if len(asked) == 1:
            route.fulfill(json={"models": []})
        else:
            route.continue_()

    page.route("**/v1/models", loading_at_first)
    page.set_extra_http_headers({"Authorization": f"Bearer {API_KEY}"})  # the key without typing it
    try:
        page.goto(f"{demo_server.base}/")
        wait_until(lambda: page.locator("#model option").count() > 0, 15, "models listed after load")
        notice = page.text_content("#model-notice") or ""
        assert len(asked) >= 2 and page.input_value("#model") == "tdmi-tiny"
        assert notice.startswith("Model tdmi-tiny: demo weights trained on synthetic figures only")
        assert "will not find real people" in notice and "tdmi weights pull" in notice
        lines = page.evaluate(
            """() => {
              const range = document.createRange();
              range.selectNodeContents(document.querySelector("#model-notice"));
              return range.getClientRects().length;
            }"""
        )
        assert lines == 1  # one line at 1280 px
        assert page.text_content("#server-status") == "ready"
        text, room = page.evaluate(
            """() => {
              const input = document.querySelector("#api-key");
              const style = getComputedStyle(input);
              const context = document.createElement("canvas").getContext("2d");
              context.font = `${style.fontStyle} ${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
              const room = input.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
              return [context.measureText(input.placeholder).width, room];
            }"""
        )
        assert 0 < text <= room, f"the placeholder needs {text} px, the field has {room}"
    finally:
        page.unroute("**/v1/models")
        page.set_extra_http_headers({})
    page.goto(f"{demo_server.base}/")  # no key: the notice asks for it
    wait_until(lambda: "API key" in (page.text_content("#model-notice") or ""), 15, "the key asked for")
    assert page.locator("#model option").count() == 0


def test_a_wrong_key_is_reported_on_the_page(page: Page, demo_server: ServerProcess) -> None:
    page.goto(f"{demo_server.base}/")
    page.fill("#api-key", "wrong")
    page.click("#start")
    wait_until(lambda: "1008" in (page.text_content("#live-message") or ""), 20, "close 1008 shown")
    assert "API key" in (page.text_content("#live-message") or "")


def test_a_camera_the_server_pulls_is_added_watched_and_removed(
    page: Page, camera_service: ServedApp
) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
    page.goto(f"{camera_service.base}/")
    page.fill("#api-key", ADMIN_KEY)
    page.dispatch_event("#api-key", "change")
    wait_until(lambda: "no camera yet" in (page.text_content("#source-state") or ""), 15, "an empty list")

    page.fill("#source-url", "rtsp://127.0.0.1:6379/x")  # the server's own loopback: refused
    page.click("#source-add")
    wait_until(lambda: "cannot add" in (page.text_content("#source-message") or ""), 15, "the refusal shown")
    assert "TDMI_SOURCE_ALLOWED_NETWORKS" in (page.text_content("#source-message") or "")

    page.fill("#source-url", CAMERA_URL)
    page.click("#source-add")
    row = page.locator("#source-list tr")
    wait_until(lambda: row.count() == 1 and row.locator("td").nth(1).text_content() == "live", 15, "live")
    source_id = row.get_attribute("data-source")
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    listed = httpx.get(f"{camera_service.base}/v1/sources", headers=admin)
    assert [s["source_id"] for s in listed.json()["sources"]] == [source_id]
    assert row.locator("td").nth(4).text_content() == CAMERA_URL

    row.get_by_role("button", name="Watch").click()
    overlay = page.locator("#source-overlay")
    wait_until(lambda: overlay.evaluate("img => img.naturalWidth") > 0, 15, "the overlay shown")
    assert overlay.evaluate("img => [img.naturalWidth, img.naturalHeight]") == list(FAKE_CAMERA_SIZE[::-1])
    assert f"api_key={ADMIN_KEY}" in (overlay.get_attribute("src") or "")  # an <img> sends no header

    row.get_by_role("button", name="Remove").click()
    wait_until(lambda: row.count() == 0, 15, "the camera gone from the list")
    assert "removed" in (page.text_content("#source-message") or "")
    assert page.locator("#source-stage").is_hidden() and overlay.get_attribute("src") is None
    assert httpx.get(f"{camera_service.base}/v1/sources", headers=admin).json() == {"sources": []}
    assert errors == []
