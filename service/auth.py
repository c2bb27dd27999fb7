"""API keys: ``Authorization: Bearer KEY`` or ``X-API-Key: KEY`` on HTTP and WebSocket alike."""

from __future__ import annotations

import hmac
import ipaddress

from starlette.datastructures import Headers

from tdmi.service.config import Settings

__all__ = ["InsecureBindError", "check_bind", "is_authorised"]


class InsecureBindError(ValueError):
    """Listening beyond loopback with no API key configured, and not told ``--insecure``."""


def presented_key(headers: Headers) -> str | None:
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return headers.get("x-api-key")


def is_authorised(settings: Settings, headers: Headers, query_key: str | None = None) -> bool:
    """True when no keys are configured, or the request carries one of them.

    ``query_key`` is the WebSocket's ``?api_key=``: browsers cannot set headers on a WebSocket.
    """
    if not settings.api_keys:
        return True
    key = presented_key(headers) or query_key
    if not key:
        return False
    return any(hmac.compare_digest(key.encode(), k.get_secret_value().encode()) for k in settings.api_keys)


def check_bind(settings: Settings) -> None:
    """Refuse to listen on a non-loopback address without keys unless ``insecure`` is set."""
    if settings.api_keys or settings.insecure:
        return
    host = settings.host
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise InsecureBindError(
            f"refusing to listen on {host} without API keys: set TDMI_API_KEYS or pass --insecure"
        )
