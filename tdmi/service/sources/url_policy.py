"""Which camera URLs the server may pull: the SSRF door of camera sources, kept narrow.

A source makes the server connect where a client said, so a URL is held to the settings before
each connection (the reader checks again at every reconnect: a name may resolve elsewhere by then):

- Schemes ``rtsp``, ``rtsps``, ``http`` and ``https``; local files and devices only with
  ``source_allow_files``.
- Every address the host resolves to must lie in ``source_allowed_networks`` (by default the
  private ranges, where cameras live): one address outside is enough to refuse, so a name cannot
  smuggle loopback or 169.254.169.254 (cloud metadata) in beside a camera. A host name listed
  there is allowed by name, whatever it resolves to.
- The service's own Redis (``redis_url``) is refused even inside an allowed network: a source
  must not become a way to talk to the cluster's state.
- A refusal for the host says the same thing whether the name resolved or not, so the answer
  cannot be used to map which hosts exist.

URLs carry credentials (``rtsp://user:password@camera/...``): :func:`redact` takes them out, and
:class:`CheckedUrl` shows only its redacted form, so a URL cannot reach a log or an answer by
accident.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass, field
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

from tdmi.service.config import Settings
from tdmi.service.logs import MASK

__all__ = ["CheckedUrl", "SourceRefused", "check_source_url", "redact"]

DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}
MAX_URL_CHARS = 4096
REFUSED = "this service may not connect to that host (TDMI_SOURCE_ALLOWED_NETWORKS)"
# query parameters whose values are credentials (cameras take ?user=admin&password=... too)
_SECRET_NAME = re.compile(r"pass|pwd|secret|token|key|auth|sig|cred|user", re.IGNORECASE)
_USERINFO = re.compile(r"//[^/?#]*@")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class SourceRefused(ValueError):
    """A URL the settings do not allow as a source; the message is safe to show the client."""


@dataclass(frozen=True)
class CheckedUrl:
    """A URL that passed :func:`check_source_url`; its repr and str are the redacted form, and
    only :meth:`reveal` gives the URL itself (for FFmpeg)."""

    redacted: str
    scheme: str  # rtsp, rtsps, http, https or file
    host: str | None  # None for a file
    port: int | None
    _url: str = field(repr=False)

    def __str__(self) -> str:
        return self.redacted

    def reveal(self) -> str:
        """The URL with its credentials: for opening it, never for a message."""
        return self._url

    @property
    def is_file(self) -> bool:
        return self.scheme == "file"


def check_source_url(url: str, settings: Settings) -> CheckedUrl:
    """``url`` as a source the settings allow, or :class:`SourceRefused`.

    Blocking: the host name is resolved (call it off the event loop)."""
    url = url.strip()
    if not url or len(url) > MAX_URL_CHARS:
        raise SourceRefused(f"a source URL has 1 to {MAX_URL_CHARS} characters")
    # a backslash is where URL parsers disagree on the host (FFmpeg's and ours must agree)
    if any(char.isspace() or not char.isprintable() or char == "\\" for char in url):
        raise SourceRefused("a source URL holds no spaces, backslashes or control characters")
    if url.startswith("/") or url.lower().startswith("file:"):
        return _checked_file(url, settings)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise SourceRefused("not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise SourceRefused("a source URL's scheme is rtsp, rtsps, http or https")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise SourceRefused("a source URL names a host")
    port = port or DEFAULT_PORTS[scheme]
    if not _host_allowed(host, port, settings):
        raise SourceRefused(REFUSED)
    return CheckedUrl(redact(url), scheme, host, port, url)


def _checked_file(url: str, settings: Settings) -> CheckedUrl:
    if not settings.source_allow_files:
        raise SourceRefused("local files and devices are not sources here (TDMI_SOURCE_ALLOW_FILES)")
    path = url
    if url.lower().startswith("file:"):
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise SourceRefused("a file URL names no other host")
        path = unquote(parts.path)
    if not path.startswith("/"):
        raise SourceRefused("a file source is an absolute path")
    return CheckedUrl(path, "file", None, None, path)


def _host_allowed(host: str, port: int, settings: Settings) -> bool:
    """Whether ``host`` is listed by name, or every address it resolves to is in a listed network;
    never the service's own Redis."""
    entries = settings.source_allowed_networks
    networks = [ipaddress.ip_network(e) for e in entries if _is_network(e)]
    addresses = _addresses(host, port)
    listed = host in entries or (bool(addresses) and all(_inside(a, networks) for a in addresses))
    return listed and not _is_redis(host, port, addresses, settings)


def _is_network(entry: str) -> bool:
    try:
        ipaddress.ip_network(entry)
    except ValueError:
        return False
    return True


def _inside(address: IPAddress, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    return any(address in network for network in networks)


def _addresses(host: str, port: int) -> set[IPAddress]:
    """The addresses a connection to ``host`` may reach; empty when it does not resolve."""
    try:
        return {_plain(ipaddress.ip_address(host))}
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return set()
    return {_plain(ipaddress.ip_address(str(info[4][0]).split("%")[0])) for info in found}


def _plain(address: IPAddress) -> IPAddress:
    """An IPv4 address written as IPv6 (``::ffff:127.0.0.1``) is the IPv4 address it reaches."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_redis(host: str, port: int, addresses: set[IPAddress], settings: Settings) -> bool:
    """Whether ``host:port`` is the service's Redis (same port, and the same name or an address
    in common)."""
    if not settings.redis_url:
        return False
    try:
        redis = urlsplit(settings.redis_url)
        redis_host, redis_port = (redis.hostname or "").rstrip("."), redis.port or 6379
    except ValueError:
        return False
    if port != redis_port or not redis_host:
        return False
    return host == redis_host or bool(addresses & _addresses(redis_host, redis_port))


def redact(url: str) -> str:
    """``url`` without its user and password and with credential-like query values masked:
    scheme, host, port and path stay, so the camera is still recognisable in a log."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return _USERINFO.sub("//", url.split("#")[0])
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{port}" if port is not None else "")
    return urlunsplit(SplitResult(parts.scheme, netloc, parts.path, _masked_query(parts.query), ""))


def _masked_query(query: str) -> str:
    pieces = []
    for piece in query.split("&") if query else []:
        name, equals, _value = piece.partition("=")
        secret = equals and _SECRET_NAME.search(unquote(name))
        pieces.append(f"{name}={MASK}" if secret else piece)
    return "&".join(pieces)
