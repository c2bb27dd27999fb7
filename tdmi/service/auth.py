"""API keys: ``Authorization: Bearer KEY`` or ``X-API-Key: KEY`` on HTTP and WebSocket alike."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass

from pydantic import SecretStr
from starlette.datastructures import Headers

from tdmi.service.config import Settings

__all__ = ["Caller", "InsecureBindError", "check_bind", "identify", "is_authorised", "is_loopback"]


class InsecureBindError(ValueError):
    """Listening beyond loopback with no API key configured, and not told ``--insecure``."""


def presented_key(headers: Headers) -> str | None:
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return headers.get("x-api-key")


@dataclass(frozen=True)
class Caller:
    """Who sends a request: ``owner`` identifies the key (a hash, never the key; None in open mode
    without keys), ``admin`` sees every key's jobs."""

    owner: str | None
    admin: bool = False

    def sees(self, owner: str | None) -> bool:
        return self.admin or self.owner is None or owner == self.owner


def _matches(key: str, keys: list[SecretStr]) -> bool:
    return any(hmac.compare_digest(key.encode(), k.get_secret_value().encode()) for k in keys)


def is_authorised(settings: Settings, headers: Headers, query_key: str | None = None) -> bool:
    """True when no keys are configured, or the request carries one of them (admin keys included).

    ``query_key`` is the WebSocket's ``?api_key=``: browsers cannot set headers on a WebSocket.
    """
    if not settings.api_keys and not settings.admin_api_keys:
        return True
    key = presented_key(headers) or query_key
    if not key:
        return False
    return _matches(key, settings.api_keys) or _matches(key, settings.admin_api_keys)


def identify(settings: Settings, headers: Headers, query_key: str | None = None) -> Caller:
    """The caller of an authorised request (``query_key`` as in ``is_authorised``); everyone is
    the same caller in open mode."""
    if not settings.api_keys and not settings.admin_api_keys:
        return Caller(owner=None)
    key = presented_key(headers) or query_key or ""  # no key: owns nothing (the request was refused)
    owner = hashlib.sha256(b"tdmi-key:" + key.encode()).hexdigest()[:32]
    return Caller(owner=owner, admin=_matches(key, settings.admin_api_keys))


def is_loopback(host: str) -> bool:
    """Whether listening on ``host`` (a name or an address) reaches this machine only."""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(settings: Settings) -> None:
    """Refuse to listen on a non-loopback address without keys unless ``insecure`` is set."""
    if settings.api_keys or settings.admin_api_keys or settings.insecure:
        return
    host = settings.host
    if not is_loopback(host):
        raise InsecureBindError(
            f"refusing to listen on {host} without API keys: set TDMI_API_KEYS or pass --insecure"
        )
