"""``/docs`` (Swagger UI) and ``/redoc`` render in headless Chromium with every request outside
the server refused, as on a machine without internet: their scripts and styles are the service's
own files, not a CDN's. The application runs in-process around a fake node (no model needed)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Page, Route, sync_playwright

from tests.helpers.fake_node import FakeNode
from tests.helpers.in_process import ServedApp, fake_settings, serving

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    node = FakeNode(fake_settings(tmp_path_factory.mktemp("data")), models=("tdmi-tiny",))
    with serving(node) as app:
        yield app


def test_the_pages_name_only_the_servers_own_files(served: ServedApp) -> None:
    for path in ("/docs", "/redoc"):
        page = httpx.get(served.base + path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "cdn." not in page.text and "fonts.googleapis" not in page.text
        assert "/docs/assets/" in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
    for name, kind in [
        ("swagger-ui-bundle.js", "text/javascript"),
        ("swagger-ui.css", "text/css"),
        ("redoc.standalone.js", "text/javascript"),
        ("favicon.png", "image/png"),
    ]:
        asset = httpx.get(f"{served.base}/docs/assets/{name}")
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(kind), name
        assert len(asset.content) > 1000, name
    for name in ("missing.js", "..%2F__init__.py", "LICENSE"):
        missing = httpx.get(f"{served.base}/docs/assets/{name}")
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"


@pytest.mark.browser
@pytest.mark.parametrize(
    ("path", "rendered"),
    [
        ("/docs", ".swagger-ui .opblock-summary-path[data-path='/v1/pose']"),
        ("/redoc", "[role='search'], .menu-content"),
    ],
)
def test_the_pages_render_with_nothing_outside_the_server(
    served: ServedApp, path: str, rendered: str, tmp_path: Path
) -> None:
    assert shutil.which(CHROMIUM) or Path(CHROMIUM).exists(), "Debian's chromium is installed by .ci/run"
    server = urlsplit(served.base).netloc
    refused: list[str] = []

    def offline(route: Route) -> None:
        netloc = urlsplit(route.request.url).netloc
        if netloc and netloc != server:
            refused.append(route.request.url)
            route.abort("internetdisconnected")
        else:
            route.continue_()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page: Page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.route("**/*", offline)
            page.goto(served.base + path)
            page.wait_for_selector(rendered, timeout=30_000)
            # the page shows this API: its title and its operations
            text = page.inner_text("body")
            assert "TDMI pose service" in text and "Create Job" in text
            page.screenshot(path=str(tmp_path / "page.png"))
        finally:
            browser.close()
    assert refused == [] and errors == []
