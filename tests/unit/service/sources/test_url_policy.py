"""Which camera URLs a source may pull (the SSRF door), and URLs' credentials kept out of sight."""

from __future__ import annotations

import logging
import socket

import pytest

from tdmi.service.config import Settings
from tdmi.service.sources.url_policy import REFUSED, SourceRefused, check_source_url, redact

CAMERA = "rtsp://admin:hunter2@10.0.0.5:554/Streaming/Channels/101?user=admin&password=hunter2&channel=1"


def _refusal(url: str, settings: Settings | None = None) -> str:
    with pytest.raises(SourceRefused) as refused:
        check_source_url(url, settings or Settings())
    return str(refused.value)


@pytest.mark.parametrize(
    "url",
    [
        "rtsp://10.1.2.3/stream",  # the private ranges are the default
        "rtsps://172.16.0.1:8322/stream",
        "http://192.168.1.10/video.mjpg",
        "https://[fd00::1]/live.m3u8",
    ],
)
def test_private_addresses_are_allowed_by_default(url: str) -> None:
    checked = check_source_url(url, Settings())
    assert checked.scheme == url.split(":")[0] and checked.host is not None


@pytest.mark.parametrize(
    "url",
    [
        "rtsp://127.0.0.1/stream",  # loopback: this host's own services
        "http://[::1]:6379/",
        "http://169.254.169.254/latest/meta-data/",  # link-local: cloud metadata
        "rtsp://8.8.8.8/stream",  # public
        "http://0.0.0.0:8000/",  # connects to this host
        "http://[::ffff:127.0.0.1]/",  # loopback written as IPv6
        "rtsp://172.32.0.1/stream",  # just outside 172.16.0.0/12
        "http://2130706433/",  # 127.0.0.1 as one number: the resolved address is what counts
        "http://localhost:8000/",
    ],
)
def test_loopback_link_local_and_public_addresses_are_refused(url: str) -> None:
    assert _refusal(url) == REFUSED


def test_an_unresolvable_host_is_refused_with_the_same_words_as_a_forbidden_one() -> None:
    assert _refusal("rtsp://no-such-camera.invalid/stream") == _refusal("rtsp://127.0.0.1/stream")


def test_listed_networks_and_names_are_allowed() -> None:
    settings = Settings(source_allowed_networks="127.0.0.0/8,Camera.Invalid.")
    assert check_source_url("rtsp://127.0.0.1:8554/cam", settings).port == 8554
    # allowed by name, though it resolves nowhere; the default port of the scheme is filled in
    assert check_source_url("rtsp://CAMERA.invalid./cam", settings).port == 554
    assert _refusal("rtsp://10.0.0.5/cam", settings) == REFUSED  # the list replaces the default


def test_a_name_is_refused_when_any_of_its_addresses_is_outside(monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS answers are the point here, so they are made up: a camera's name that also resolves to
    loopback must not pass on the strength of its private address."""
    answers = {"cam.example": ["10.0.0.5", "127.0.0.1"], "good.example": ["10.0.0.6", "fd00::6"]}

    def resolve(host: str, port: int, *args: object, **kwargs: object) -> list[tuple]:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in answers[host]]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    assert _refusal("rtsp://cam.example/stream") == REFUSED
    assert check_source_url("rtsp://good.example/stream", Settings()).host == "good.example"


def test_the_services_own_redis_is_refused_even_in_an_allowed_network() -> None:
    settings = Settings(redis_url="redis://10.0.0.9:6379/0")
    assert _refusal("http://10.0.0.9:6379/", settings) == REFUSED
    assert check_source_url("rtsp://10.0.0.9/cam", settings).port == 554  # the same host, another port
    # named differently from redis_url: the addresses meet
    local = Settings(redis_url="redis://localhost:6379/0", source_allowed_networks=["127.0.0.0/8"])
    assert _refusal("http://127.0.0.1:6379/", local) == REFUSED
    assert check_source_url("http://127.0.0.1:6380/", local).port == 6380


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://10.0.0.5/video", "scheme is rtsp, rtsps, http or https"),
        ("gopher://10.0.0.5/", "scheme is rtsp, rtsps, http or https"),
        ("10.0.0.5/stream", "scheme is rtsp, rtsps, http or https"),
        ("rtsp:///stream", "names a host"),
        ("rtsp://10.0.0.5:99999/stream", "not a valid URL"),
        ("rtsp://10.0.0.5/a b", "no spaces, backslashes or control characters"),
        ("rtsp://10.0.0.5/\nx", "no spaces, backslashes or control characters"),
        ("http://10.0.0.5\\@127.0.0.1/", "no spaces, backslashes or control characters"),
        ("", "1 to 4096 characters"),
        ("file:///etc/passwd", "TDMI_SOURCE_ALLOW_FILES"),
        ("/dev/video0", "TDMI_SOURCE_ALLOW_FILES"),
    ],
)
def test_bad_schemes_and_shapes_say_what_is_wrong(url: str, words: str) -> None:
    assert words in _refusal(url)


def test_files_and_devices_only_with_the_setting() -> None:
    settings = Settings(source_allow_files=True)
    checked = check_source_url("file:///srv/clips/hall%201.mp4", settings)
    assert checked.is_file and checked.reveal() == "/srv/clips/hall 1.mp4" and checked.host is None
    assert check_source_url("/dev/video0", settings).reveal() == "/dev/video0"
    assert "other host" in _refusal("file://fileserver/share/clip.mp4", settings)
    assert "absolute path" in _refusal("file:clip.mp4", settings)


def test_redact_drops_the_user_and_password_and_credential_like_query_values() -> None:
    assert redact(CAMERA) == "rtsp://10.0.0.5:554/Streaming/Channels/101?user=***&password=***&channel=1"
    assert redact("http://[fd00::1]:8080/snap?token=abc&ApiKey=x&size=2") == (
        "http://[fd00::1]:8080/snap?token=***&ApiKey=***&size=2"
    )
    assert redact("rtsp://cam.local/live#pw") == "rtsp://cam.local/live"
    # a URL urllib cannot take apart still loses its credentials
    assert redact("rtsp://admin:hunter2@cam:99999/x") == "rtsp://cam:99999/x"


def test_a_checked_url_shows_only_its_redacted_form(caplog: pytest.LogCaptureFixture) -> None:
    checked = check_source_url(CAMERA, Settings())
    assert checked.reveal() == CAMERA
    shown = [str(checked), repr(checked), f"{checked}", "%s" % (checked,)]  # noqa: UP031
    logging.getLogger("tdmi.test").warning("camera %s, %r", checked, checked)
    assert all("hunter2" not in text for text in [*shown, caplog.text])
    assert "10.0.0.5:554/Streaming/Channels/101" in caplog.text


def test_allowed_networks_come_comma_separated_or_as_json_and_bad_entries_fail_at_start_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TDMI_SOURCE_ALLOWED_NETWORKS", "10.20.0.0/16, cam.local ,2001:db8::/32")
    assert Settings().source_allowed_networks == ["10.20.0.0/16", "cam.local", "2001:db8::/32"]
    monkeypatch.setenv("TDMI_SOURCE_ALLOWED_NETWORKS", '["192.168.7.0/24"]')
    assert Settings().source_allowed_networks == ["192.168.7.0/24"]
    for bad in ("10.0.0.0/33", "cam_01", "10.0.0"):
        with pytest.raises(ValueError, match="neither a network"):
            Settings(source_allowed_networks=[bad])
    assert Settings(source_allowed_networks=[]).source_allowed_networks == []
    assert _refusal("rtsp://10.0.0.5/x", Settings(source_allowed_networks=[])) == REFUSED
