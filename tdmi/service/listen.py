"""Where a node listens: each role's default port, and a socket bound before the node starts.

An API node and one worker per GPU can share a host on their defaults: ``tdmi serve`` (embedded
or API node) takes ``base_port`` (8000), a worker on device ``cuda:N`` (or ``cpu:N``) takes
``base_port + 1 + N``. The socket is bound first, so a node whose port is taken stops with one
line naming the flag before it loads a model or joins a cluster.
"""

from __future__ import annotations

import errno
import socket
from typing import Literal

from tdmi.service.config import Settings

__all__ = ["PortUnavailableError", "Role", "bind_listener", "device_index", "listen_port", "node_url"]

Role = Literal["serve", "worker"]


class PortUnavailableError(ValueError):
    """The node's address cannot be bound (in use, not an address of this host, not permitted)."""


def device_index(device: str) -> int:
    """``cuda:1`` -> 1; a device without an index (``cpu``, ``cuda``) -> 0."""
    _, _, index = device.partition(":")
    if not index:
        return 0
    if not index.isdigit():
        raise ValueError(f"device {device!r}: the index after ':' must be a number")
    return int(index)


def listen_port(settings: Settings, role: Role) -> int:
    """``port`` when set, else the role's default derived from ``base_port``."""
    if settings.port is not None:
        return settings.port
    port = settings.base_port if role == "serve" else settings.base_port + 1 + device_index(settings.device)
    if port > 65535:
        raise PortUnavailableError(f"port {port} (from --base-port {settings.base_port}) is above 65535")
    return port


def node_url(settings: Settings, role: Role) -> str:
    """``http://HOST:PORT`` to open on this host: a wildcard address (all interfaces) is reached at
    loopback; ``tdmi serve`` passes the port it bound, so ``--port 0`` shows the one picked."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(settings.host, settings.host)
    return f"http://{f'[{host}]' if ':' in host else host}:{listen_port(settings, role)}"


def _how_to_move(settings: Settings, role: Role) -> str:
    if settings.port is not None:
        return "choose another with --port (TDMI_PORT)"
    if role == "worker":
        return (
            f"it is --base-port {settings.base_port} + 1 + the index of device {settings.device}; "
            "give this worker one with --port (TDMI_PORT), or another --base-port"
        )
    return "choose another with --port (TDMI_PORT) or --base-port (TDMI_BASE_PORT)"


def bind_listener(settings: Settings, role: Role) -> socket.socket:
    """A TCP socket bound to the node's address (not yet listening: the server does that after
    start-up); raises ``PortUnavailableError`` with a one-line reason naming the flag."""
    host, port = settings.host, listen_port(settings, role)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: no TIME_WAIT wait
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortUnavailableError(
                f"port {port} on {host} is in use: {_how_to_move(settings, role)}"
            ) from None
        raise PortUnavailableError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock
