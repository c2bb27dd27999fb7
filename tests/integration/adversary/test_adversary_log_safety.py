"""Log lines that a client cannot forge, against a real server in both log formats: a file name
with a line feed and a log line of the attacker's choosing after it, or with terminal escapes,
reaches the log escaped, on the one line that quotes it (issue 21, item 7). The upload's log
line passes the name as it came: the formatter escapes it, whatever the call site does.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers.server import ServerProcess, running_server

pytestmark = pytest.mark.slow  # a server per log format

FORGED = "2026-01-01 00:00:00,000 CRITICAL tdmi.auth: admin key accepted"
NAMES = {
    "line-feed": f"x.mp4\n{FORGED}",
    "tab-and-delete": "x\t\x7f.mp4",
    "ansi": "\x1b[2J\x1b[1;31mred\x1b[0m.mp4",
    "c1-and-separators": "x\u009b31m\u0085y\u2028z\u202e.mp4",
}
ESCAPED = {  # as the log shows them
    "line-feed": f"x.mp4\\n{FORGED}",
    "tab-and-delete": "x\\t\\x7f.mp4",
    "ansi": "\\x1b[2J\\x1b[1;31mred\\x1b[0m.mp4",
    "c1-and-separators": "x\\x9b31m\\x85y\\u2028z\\u202e.mp4",
}
RAW_CONTROLS = ["\x1b", "\x7f", "\u009b", "\u0085", "\u2028", "\u202e"]


@pytest.fixture(scope="module", params=["text", "json"])
def log_format(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def server(
    log_format: str, tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path
) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path_factory.mktemp(f"logs-{log_format}"), tiny_checkpoint, env={"TDMI_LOG_FORMAT": log_format}
    ) as proc:
        yield proc


def _upload(server: ServerProcess, filename: str, content: bytes) -> httpx.Response:
    """The file name as UTF-8 bytes in the part header, as a hostile client writes it (a browser
    or httpx would escape the line feed)."""
    body = (
        b'--b0\r\nContent-Disposition: form-data; name="file"; filename="'
        + filename.encode()
        + b'"\r\nContent-Type: video/mp4\r\n\r\n'
        + content
        + b"\r\n--b0--\r\n"
    )
    headers = {"Content-Type": "multipart/form-data; boundary=b0"}
    return httpx.post(f"{server.base}/v1/pose", content=body, headers=headers, timeout=60)


def _logged_line(server: ServerProcess, token: str) -> str:
    """The log line that quotes ``token`` (a thread writes the log: wait for it)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        lines = [line for line in server.log().splitlines() if token in line]
        if lines:
            return lines[0]
        time.sleep(0.1)
    raise AssertionError(f"{token} is in no log line:\n{server.log()[-3000:]}")


@pytest.mark.parametrize("name", list(NAMES))
def test_a_hostile_file_name_is_logged_escaped_on_one_line(
    server: ServerProcess, log_format: str, name: str
) -> None:
    token = uuid.uuid4().hex
    reply = _upload(server, f"{token}{NAMES[name]}", b"not a video")
    assert reply.status_code == 415, reply.text
    line = _logged_line(server, token)
    log = server.log()
    assert not [entry for entry in log.splitlines() if entry.startswith(FORGED[:10])], "a forged line"
    assert not [char for char in RAW_CONTROLS if char in log], "a raw control character in the log"
    if log_format == "json":  # the object carries the name as it came; the line has it escaped
        assert f"{token}{NAMES[name]}" in json.loads(line)["message"]
    else:
        assert f"{token}{ESCAPED[name]}" in line


# a record's first line: its time (text) or a JSON object; a traceback's lines are indented
RECORD_START = {
    "text": re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ [\w.]+: "),
    "json": re.compile(r"\{"),
}


def test_every_line_is_a_record_or_indented(server: ServerProcess, log_format: str) -> None:
    """After the hostile names above: each line the service wrote since start-up begins a record
    (the text format's time, or a JSON object, which must parse) or is an indented traceback line."""
    log = server.log()
    lines = log[log.index("Application startup complete") :].splitlines()[1:]
    assert len(lines) >= 2 * len(NAMES)  # each upload: its line and the access line
    for line in lines:
        assert RECORD_START[log_format].match(line) or line.startswith("  "), line
        if log_format == "json":
            assert {"ts", "level", "logger", "message"} <= set(json.loads(line))
