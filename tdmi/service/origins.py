"""Which web origins may drive the service, and which Host names it answers for.

Two browser attacks on a service without keys (the local default), each closed by default:

- **Cross-site requests.** Any page the user visits can open a WebSocket to the service or post
  a form to it. A browser says which page asks: ``Origin`` (on WebSocket handshakes and on every
  state-changing request), else ``Referer`` or ``Sec-Fetch-Site``. A request is *foreign* when
  that page's origin is neither the service's own (its host:port equals the request's ``Host``)
  nor listed in ``allowed_origins`` (``*``: any). A client that sends none of these headers is no
  browser, and not foreign.
- **DNS rebinding.** A hostile name made to resolve to this host sends that name as ``Host``.
  ``allowed_hosts`` lists the names answered (``name`` for any port, ``name:port``, ``*``);
  unset, a service bound to a loopback address answers only its loopback names (``localhost``,
  ``127.0.0.1``, ``[::1]`` and the address it is bound to, any port), any other, any name.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.datastructures import Headers

from tdmi.service.auth import is_loopback
from tdmi.service.config import Settings

__all__ = ["HostRule", "OriginRule"]

_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
_DEFAULT_PORTS = {"http": ":80", "ws": ":80", "https": ":443", "wss": ":443"}


def _split_port(host: str) -> tuple[str, str]:
    """``name:port`` -> (name, port); ``[v6]:port`` keeps its brackets; no port: ""."""
    bracket = host.rfind("]")
    colon = host.rfind(":")
    if colon <= bracket:
        return host, ""
    return host[:colon], host[colon + 1 :]


def _bracketed(host: str) -> str:
    """An IPv6 address as a Host header writes it: ``::1`` -> ``[::1]``; anything else as is."""
    try:
        return f"[{ipaddress.IPv6Address(host)}]"
    except ValueError:
        return host


@dataclass(frozen=True)
class HostRule:
    """The ``Host`` names answered; ``names`` None: any."""

    names: frozenset[str] | None

    @classmethod
    def of(cls, settings: Settings) -> HostRule:
        if settings.allowed_hosts is None:
            if not is_loopback(settings.host):
                return cls(None)
            return cls(_LOOPBACK_NAMES | {_bracketed(settings.host.lower())})
        if "*" in settings.allowed_hosts:
            return cls(None)
        return cls(frozenset(_bracketed(host.strip().lower()) for host in settings.allowed_hosts))

    def allows(self, host: str | None) -> bool:
        """A request without ``Host`` (HTTP/1.0) comes from no browser: allowed."""
        if self.names is None or host is None:
            return True
        host = host.lower()
        return host in self.names or _split_port(host)[0] in self.names


def _without_default_port(host: str, scheme: str) -> str:
    default = _DEFAULT_PORTS.get(scheme)
    return host.removesuffix(default) if default else host


def _origin(url: str) -> tuple[str, str] | None:
    """(scheme, host[:port]) of an origin or URL, lower-cased, without a default port;
    None for ``null`` (opaque origins: sandboxed frames, files) and anything unparsable."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = parts.netloc.rpartition("@")[2].lower()
    if not scheme or not host:
        return None
    return scheme, _without_default_port(host, scheme)


@dataclass(frozen=True)
class OriginRule:
    """Web origins that may drive the service besides its own; ``allowed`` None: any."""

    allowed: frozenset[tuple[str, str]] | None

    @classmethod
    def of(cls, settings: Settings) -> OriginRule:
        if "*" in settings.allowed_origins:
            return cls(None)
        parsed = (_origin(origin) for origin in settings.allowed_origins)
        return cls(frozenset(origin for origin in parsed if origin is not None))

    def foreign(self, headers: Headers) -> str | None:
        """Who a request comes from when that is a foreign page (as the browser says it), else None."""
        if self.allowed is None:
            return None
        origin = headers.get("origin")
        if origin is not None:
            return None if self._accepts(origin, headers.get("host")) else origin
        referer = headers.get("referer")
        if referer is not None:
            if self._accepts(referer, headers.get("host")):
                return None
            page = _origin(referer)
            return f"{page[0]}://{page[1]}" if page else "a page with an unreadable Referer"
        site = headers.get("sec-fetch-site", "")
        return f"a {site} page" if site in ("cross-site", "same-site") else None

    def _accepts(self, url: str, host: str | None) -> bool:
        origin = _origin(url)
        if origin is None:
            return False
        scheme, netloc = origin
        if self.allowed is not None and origin in self.allowed:
            return True
        return host is not None and netloc == _without_default_port(host.lower(), scheme)
