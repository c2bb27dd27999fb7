"""The Host and Origin rules of the service's edge, and the shape of a client's value in text."""

from __future__ import annotations

import pytest
from starlette.datastructures import Headers

from tdmi.service.client_text import escape_controls, shorten, shown
from tdmi.service.config import Settings
from tdmi.service.origins import HostRule, OriginRule


@pytest.mark.parametrize(
    ("bind", "allowed", "host", "served"),
    [
        ("127.0.0.1", None, "127.0.0.1:8000", True),
        ("127.0.0.1", None, "LocalHost:1", True),
        ("127.0.0.1", None, "[::1]:8000", True),
        ("127.0.0.1", None, "localhost", True),
        ("127.0.0.1", None, "evil.example", False),
        ("127.0.0.1", None, "evil.example:8000", False),
        ("127.0.0.1", None, "localhost.:8000", False),
        ("127.0.0.1", None, "localhost.evil.example:8000", False),
        ("127.0.0.1", None, None, True),  # HTTP/1.0 without Host: no browser
        ("127.0.0.5", None, "127.0.0.5:8000", True),
        ("::1", None, "[::1]:8000", True),
        ("0.0.0.0", None, "evil.example", True),  # beyond loopback: keys guard it, any name
        ("0.0.0.0", ["pose.example"], "pose.example:443", True),
        ("0.0.0.0", ["pose.example"], "evil.example", False),
        ("0.0.0.0", ["pose.example:8443"], "pose.example:8443", True),
        ("0.0.0.0", ["pose.example:8443"], "pose.example:8000", False),
        ("127.0.0.1", ["*"], "evil.example", True),
    ],
)
def test_hosts(bind: str, allowed: list[str] | None, host: str | None, served: bool) -> None:
    settings = Settings(host=bind, allowed_hosts=allowed, insecure=True)
    assert HostRule.of(settings).allows(host) is served


def _foreign(headers: dict[str, str], allowed: list[str] | None = None) -> str | None:
    rule = OriginRule.of(Settings(allowed_origins=allowed or []))
    return rule.foreign(Headers({"host": "localhost:8000", **headers}))


@pytest.mark.parametrize(
    "headers",
    [
        {},  # no browser
        {"origin": "http://localhost:8000"},
        {"origin": "HTTPS://LOCALHOST:8000"},
        {"referer": "http://localhost:8000/index.html"},
        {"sec-fetch-site": "same-origin"},
        {"sec-fetch-site": "none"},  # typed into the address bar
    ],
)
def test_the_own_origin_and_no_browser_are_not_foreign(headers: dict[str, str]) -> None:
    assert _foreign(headers) is None


@pytest.mark.parametrize(
    ("headers", "shown_as"),
    [
        ({"origin": "http://evil.example"}, "http://evil.example"),
        ({"origin": "null"}, "null"),
        ({"origin": "http://localhost:8001"}, "http://localhost:8001"),
        ({"origin": "http://localhost"}, "http://localhost"),
        ({"referer": "http://evil.example:81/a?b=c"}, "http://evil.example:81"),
        ({"referer": "::::"}, "a page with an unreadable Referer"),
        ({"sec-fetch-site": "cross-site"}, "a cross-site page"),
        ({"sec-fetch-site": "same-site"}, "a same-site page"),
        ({"origin": "http://evil.example", "referer": "http://localhost:8000/"}, "http://evil.example"),
    ],
)
def test_other_pages_are_foreign(headers: dict[str, str], shown_as: str) -> None:
    assert _foreign(headers) == shown_as


def test_listed_origins_are_not_foreign_with_default_ports_understood() -> None:
    listed = ["https://app.example", "http://tool.example:8080"]
    assert _foreign({"origin": "https://app.example:443"}, listed) is None
    assert _foreign({"origin": "http://tool.example:8080"}, listed) is None
    assert _foreign({"origin": "http://app.example"}, listed) == "http://app.example"
    assert _foreign({"origin": "http://evil.example"}, ["*"]) is None


def test_a_default_port_in_host_or_origin_is_the_same_origin() -> None:
    rule = OriginRule.of(Settings())
    assert rule.foreign(Headers({"host": "pose.example:80", "origin": "http://pose.example"})) is None
    assert rule.foreign(Headers({"host": "pose.example", "origin": "https://pose.example:443"})) is None


def test_a_client_value_is_cut_then_escaped() -> None:
    assert shorten("abcdef", 4) == "abcd...[2 more characters]"
    assert shorten("abc", 4) == "abc"
    assert (
        escape_controls("a\nb\r\t\x1b\x7f\x9f\u2028\u2066\udc80é")
        == "a\\nb\\r\\t\\x1b\\x7f\\x9f\\u2028\\u2066\\udc80é"
    )
    assert escape_controls("a\nb\x1b", keep_newlines=True) == "a\nb\\x1b"
    assert shown("\n" * 500, 3) == "\\n\\n\\n...[497 more characters]"
