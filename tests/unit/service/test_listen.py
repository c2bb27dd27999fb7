"""Each role's default port, and binding before start-up with a one-line error naming the flag."""

from __future__ import annotations

import socket

import pytest

from tdmi.service.config import Settings
from tdmi.service.listen import PortUnavailableError, bind_listener, device_index, listen_port, node_url


def test_roles_share_a_host_on_their_defaults() -> None:
    assert listen_port(Settings(), "serve") == 8000
    assert listen_port(Settings(device="cuda:0"), "worker") == 8001
    assert listen_port(Settings(device="cuda:3", base_port=9000), "worker") == 9004
    assert listen_port(Settings(device="cpu"), "worker") == 8001
    assert listen_port(Settings(port=7000, device="cuda:3"), "worker") == 7000  # --port wins


def test_the_url_to_open_names_a_reachable_host_and_the_port() -> None:
    assert node_url(Settings(port=41234), "serve") == "http://127.0.0.1:41234"
    assert node_url(Settings(host="0.0.0.0", insecure=True), "serve") == "http://127.0.0.1:8000"
    assert node_url(Settings(host="::", insecure=True), "worker") == "http://[::1]:8001"
    assert (
        node_url(Settings(host="pose.example", port=80, insecure=True), "serve") == "http://pose.example:80"
    )


def test_device_index_reads_the_number_after_the_colon() -> None:
    assert [device_index(d) for d in ("cpu", "cuda", "cuda:2", "cpu:1")] == [0, 0, 2, 1]
    with pytest.raises(ValueError, match="must be a number"):
        device_index("cuda:x")


def test_a_derived_port_beyond_the_range_is_refused() -> None:
    with pytest.raises(PortUnavailableError, match="above 65535"):
        listen_port(Settings(base_port=65535), "worker")


@pytest.mark.parametrize(("role", "hint"), [("serve", "--base-port"), ("worker", "index of device cpu")])
def test_a_taken_default_port_names_the_flags(role: str, hint: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        base = port if role == "serve" else port - 1
        settings = Settings(base_port=base)
        with pytest.raises(PortUnavailableError) as caught:
            bind_listener(settings, role)  # type: ignore[arg-type]
    message = str(caught.value)
    assert "\n" not in message and f"port {port} on 127.0.0.1 is in use" in message
    assert "--port" in message and hint in message


def test_a_taken_explicit_port_names_the_port_flag() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortUnavailableError, match=f"port {port} .* in use: choose another with --port"):
            bind_listener(Settings(port=port), "worker")


def test_the_bound_socket_is_the_nodes_address() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with bind_listener(Settings(port=port), "serve") as listener:
        assert listener.getsockname() == ("127.0.0.1", port)
