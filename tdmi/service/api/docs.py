"""``/docs`` (Swagger UI) and ``/redoc`` from files installed with the service, never from a CDN.

FastAPI's own pages load their scripts, styles, favicon and fonts from public hosts, so they are a
blank page on a machine without internet, which is where many of these servers run. The assets
come from the ``fastapi-offline`` package (Swagger UI and ReDoc's standalone bundles, with their
licences); we use only its files, located without importing it, and FastAPI's page builders.
A Content-Security-Policy keeps the pages on this origin: ReDoc's bundle still names a logo on
its publisher's host, which the browser then never asks for.
"""

from __future__ import annotations

import base64
import hashlib
import re

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from tdmi.service.api.package_files import package_folder
from tdmi.service.client_text import shown
from tdmi.service.errors import ApiError

__all__ = ["ASSETS", "router"]

_MEDIA_TYPES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}
_PREFIX = "/docs/assets/"
_OPENAPI = "/openapi.json"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def _kept_here(page: HTMLResponse) -> HTMLResponse:
    """``page`` allowed this origin only, and its own inline scripts by their hashes (Swagger UI
    starts from one); styles inline too (both bundles inject theirs), workers from blobs (ReDoc)."""
    body = bytes(page.body).decode()
    hashes = "".join(
        f" 'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"
        for script in _INLINE_SCRIPT.findall(body)
    )
    page.headers["Content-Security-Policy"] = (
        f"default-src 'self'; script-src 'self'{hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; worker-src 'self' blob:; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'"
    )
    page.headers["X-Content-Type-Options"] = "nosniff"
    return page


ASSETS = package_folder("fastapi_offline", "static", "the API pages need fastapi-offline (a dependency)")
router = APIRouter(include_in_schema=False)


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    page = get_swagger_ui_html(
        openapi_url=_OPENAPI,
        title=f"{request.app.title}: API",
        swagger_js_url=_PREFIX + "swagger-ui-bundle.js",
        swagger_css_url=_PREFIX + "swagger-ui.css",
        swagger_favicon_url=_PREFIX + "favicon.png",
        # the online validator badge would send the schema to a public host
        swagger_ui_parameters={"validatorUrl": None},
    )
    return _kept_here(page)


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    page = get_redoc_html(
        openapi_url=_OPENAPI,
        title=f"{request.app.title}: API",
        redoc_js_url=_PREFIX + "redoc.standalone.js",
        redoc_favicon_url=_PREFIX + "favicon.png",
        with_google_fonts=False,
    )
    return _kept_here(page)


@router.get(_PREFIX + "{name}")
def asset(name: str) -> FileResponse:
    media_type = _MEDIA_TYPES.get(name)
    if media_type is None:
        raise ApiError(404, "not_found", f"no API page asset {shown(name, 64)!r}")
    return FileResponse(ASSETS / name, media_type=media_type, headers={"Cache-Control": "max-age=86400"})
