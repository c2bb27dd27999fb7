"""``tdmi-client`` output meeting a reader that went away (``| head``), and the media extra's
install hint. The server is a loopback HTTP stub holding one ``/v1/models`` answer
(tests.helpers.mirror): what is tested is the command's output, not the service."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tdmi.client.cli import EXIT_CODES
from tdmi.protocol import ModelPublic, ModelsPublic, SkeletonPublic
from tdmi.protocol.media import MediaUnavailable, require
from tests.helpers.mirror import Mirror, serve_mirror

CLIENT = str(Path(sys.executable).with_name("tdmi-client"))


def _model(i: int) -> ModelPublic:
    skeleton = SkeletonPublic(layout="coco-17", joints=[f"j{k}" for k in range(17)], edges=[], flip_pairs=[])
    return ModelPublic(
        name=f"model-{i}",
        description="a test model",
        num_frames=3,
        input_size=(256, 192),
        checkpoint=None,
        skeleton=skeleton,
    )


@pytest.fixture(scope="module")
def stub() -> Iterator[Mirror]:
    with serve_mirror() as server:
        server.files["/v1/models"] = (
            ModelsPublic(models=[_model(i) for i in range(3)]).model_dump_json().encode()
        )
        yield server


@pytest.mark.parametrize("command", [["models", "--json"], ["models"]])
def test_output_into_a_pipe_whose_reader_is_gone_ends_quietly_with_the_sigpipe_status(
    stub: Mirror, command: list[str]
) -> None:
    """As ``tdmi-client models --json | head`` when head has exited before the answer came."""
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            [CLIENT, "--url", stub.base, *command], stdout=write, stderr=subprocess.PIPE, timeout=120
        )
    finally:
        os.close(write)
    assert done.stderr == b""  # no "[Errno 32] Broken pipe", nothing ignored at exit
    assert done.returncode == EXIT_CODES["stdout_closed"] == 141  # as a shell reports `yes | head`


def test_the_media_hint_works_from_an_index_and_from_a_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "av", None)  # as if PyAV were not installed
    with pytest.raises(MediaUnavailable) as raised:
        require("av", "reading a video")
    message = str(raised.value)
    assert message.startswith("reading a video needs PyAV, which is not installed: ")
    assert "pip install 'tdmi-client[media]'" in message and "pip install './clients[media]'" in message
