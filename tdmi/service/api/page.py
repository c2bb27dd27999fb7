"""``/``: the browser page for a live webcam and video jobs (``clients/tdmi/client/web``, plain HTML/CSS/JS).

The files are package data of the SDK (``tdmi/client/web`` in its wheel, ``clients/tdmi/client/web`` in the
repository), found where the import system would load ``tdmi.client`` from, without importing it:
the service does not depend on its clients' code. That is right for a wheel, an editable install
and a checkout alike.
The page is public (it holds no data); the API calls it makes carry the key the user types.
A strict Content-Security-Policy allows nothing but this origin: no CDN, no inline script. The
referrer policy is ``same-origin``: under ``no-referrer`` the Fetch standard has a browser send
``Origin: null`` with the page's own uploads (Chromium sends the origin anyway), and the
cross-site check (``tdmi.service.request_guard``) refuses a null origin.
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from tdmi.service.api.package_files import package_folder
from tdmi.service.client_text import shown
from tdmi.service.errors import ApiError

__all__ = ["WEB_DIR", "router"]


WEB_DIR = package_folder(
    "tdmi.client", "web", "the browser page comes with tdmi-client, which is not installed"
)
_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}

_HOST = re.compile(r"[A-Za-z0-9.\-]+(:\d+)?|\[[0-9A-Fa-f:.]+\](:\d+)?")  # nothing that could end the policy

router = APIRouter(include_in_schema=False)


def _headers(request: Request) -> dict[str, str]:
    host = request.headers.get("host", "")
    sockets = (
        f" ws://{host} wss://{host}" if _HOST.fullmatch(host) else ""
    )  # older browsers: 'self' misses ws:
    policy = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
        f"media-src 'self' blob: mediastream:; connect-src 'self'{sockets}; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    )
    return {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-cache",
    }


def _file(request: Request, name: str) -> FileResponse:
    path = WEB_DIR / name
    media_type = _MEDIA_TYPES.get(path.suffix)
    if media_type is None or "/" in name or name.startswith(".") or not path.is_file():
        raise ApiError(404, "not_found", f"no page file {shown(name, 64)!r}")
    return FileResponse(path, media_type=media_type, headers=_headers(request))


@router.get("/")
def index(request: Request) -> FileResponse:
    return _file(request, "index.html")


@router.get("/web/{name}")
def web_file(request: Request, name: str) -> FileResponse:
    return _file(request, name)
