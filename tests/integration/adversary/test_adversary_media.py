"""Media quirks and media bombs, against a real server: headers are checked before anything is
decoded, and media is read as people record it (phones' rotation, edit lists, MPO stills, corrupt
frames, several video streams, JPEGs without scan data).

Every file is made in memory (tests/helpers/media.py). Where memory is the question the server's
RSS is sampled while it is attacked. Measured before the fix: a 750 KB H.264 MP4 of one
16000x16000 frame cost the server 588 MiB before its 413 (FFmpeg's stream probing decoded the
frame), 539 MiB when its container said 160x160, six such uploads at once 3.2 GiB; a stream that
grew from 160x160 to 16000x16000 midway cost 747 MiB before its job failed.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import httpx
import numpy as np
import pytest
from PIL import Image
from websockets.sync.client import connect

from tests.helpers.media import (
    claim_size,
    display_matrix,
    encode_video,
    jpeg,
    jpeg_cut_short,
    jpeg_without_scan_data,
    mpo,
    picture,
    video_streams,
    with_junk_frames,
)
from tests.helpers.process import RssSampler
from tests.helpers.server import ServerProcess, running_server
from tests.helpers.waits import messages_until
from tests.integration.conftest import SynthVideo

MAX_CORRUPT_FRAMES = 5
ENV = {
    "TDMI_MAX_CORRUPT_FRAMES": str(MAX_CORRUPT_FRAMES),
    "TDMI_STALENESS_MS": "60000",  # a 2-core CI machine is slow: no live drops for staleness
}
BOMB_SIDE = 16000  # near the largest frame H.264 allows; the server's limit is 3840x2160 pixels
# one 16000x16000 frame decoded is 366 MiB (yuv420p); the fixed server reads headers only (~6 MiB)
RSS_BOUND_MIB = 100


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("data"), tiny_checkpoint, env=ENV) as proc:
        yield proc


# -- talking to the server --------------------------------------------------------------------


def _job(
    server: ServerProcess, content: bytes, name: str = "v.mp4", timeout: float = 300, **fields: str
) -> httpx.Response:
    """A job run to its end (``?wait=true``): 200 with the result, or the error."""
    return httpx.post(
        f"{server.base}/v1/pose",
        params={"wait": "true"},
        files={"file": (name, content)},
        data=fields,
        timeout=timeout,
    )


def _post(server: ServerProcess, content: bytes, name: str = "v.mp4") -> httpx.Response:
    return httpx.post(f"{server.base}/v1/pose", files={"file": (name, content)}, timeout=120)


def _overlay_frames(server: ServerProcess, job_id: str) -> list[np.ndarray]:
    reply = httpx.get(f"{server.base}/v1/pose/{job_id}/video", timeout=60)
    assert reply.status_code == 200, reply.text
    with av.open(io.BytesIO(reply.content)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def _live(server: ServerProcess, frames: list[bytes]) -> list[dict]:
    """Each frame sent with a client box over it, one at a time; the answer to each: its result
    or its error. The stream must go on to its end."""
    answers = []
    with connect(f"{server.ws_base}/v1/stream", max_size=None) as ws:
        ws.send(json.dumps({"type": "config", "detector": "client", "lookahead": 0}))
        messages_until(ws, "ready")
        for data in frames:
            ws.send(json.dumps({"type": "boxes", "boxes": [[0, 0, 32, 32]]}))
            ws.send(data)
            answers.append(messages_until(ws, "result", "error")[-1])
        ws.send(json.dumps({"type": "end"}))
        messages_until(ws, "ended")
    return answers


def _keypoints(result: dict) -> list[np.ndarray]:
    """Per frame, the keypoints of its persons: (persons, joints, 3)."""
    return [np.array([p["keypoints"] for p in frame["persons"]]) for frame in result["frames"]]


def _rss_growth(server: ServerProcess, attack: Callable[[], Any]) -> tuple[float, Any]:
    """The server's peak RSS growth in MiB while ``attack`` runs, and what it returned."""
    with RssSampler(server.proc.pid) as rss:
        outcome = attack()
    return rss.growth, outcome


# -- bombs: headers before pixels -------------------------------------------------------------


@pytest.fixture(scope="module")
def bomb_ts() -> bytes:
    """One H.264 frame of 16000x16000 at 1 s in MPEG-TS (flat grey: about 770 KB)."""
    side = BOMB_SIDE
    frame = av.VideoFrame(side, side, "yuv420p")
    for plane in frame.planes:
        memoryview(plane)[:] = b"\x80" * plane.buffer_size
    frame.pts, frame.time_base = 10, Fraction(1, 10)
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mpegts") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = side, side, "yuv420p"
        stream.codec_context.options = {"preset": "ultrafast", "crf": "51", "threads": "1"}
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def bomb_mp4(bomb_ts: bytes) -> bytes:
    """The same frame in an MP4, whose header states its size."""
    buffer = io.BytesIO()
    with av.open(io.BytesIO(bomb_ts)) as source, av.open(buffer, mode="w", format="mp4") as target:
        stream = target.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(video=0):
            if packet.dts is not None:
                packet.stream = stream
                target.mux(packet)
    return buffer.getvalue()


def _refused_as_too_large(reply: httpx.Response) -> None:
    assert reply.status_code == 413, reply.text
    assert reply.json()["error"] == "too_large"
    assert f"{BOMB_SIDE}x{BOMB_SIDE} exceed" in reply.json()["detail"]


def test_a_video_bomb_is_refused_from_its_headers(server: ServerProcess, bomb_mp4: bytes) -> None:
    assert len(bomb_mp4) < 1_000_000
    growth, reply = _rss_growth(server, lambda: _post(server, bomb_mp4))
    _refused_as_too_large(reply)
    assert growth < RSS_BOUND_MIB, f"the server grew by {growth:.0f} MiB for a refused upload"


def test_a_container_that_understates_the_size_is_refused_from_the_codec_header(
    server: ServerProcess, bomb_mp4: bytes
) -> None:
    """The MP4's track header and sample entry say 160x160; its H.264 header says 16000x16000."""
    liar = claim_size(bomb_mp4, 160, 160)
    with av.open(io.BytesIO(liar), options={"codec_whitelist": "none"}) as container:
        assert container.streams.video[0].codec_context.width == 160  # the container's word
    growth, reply = _rss_growth(server, lambda: _post(server, liar))
    _refused_as_too_large(reply)
    assert growth < RSS_BOUND_MIB, f"the server grew by {growth:.0f} MiB for a refused upload"


def test_six_bombs_at_once(server: ServerProcess, bomb_mp4: bytes) -> None:
    bombs = [bomb_mp4, claim_size(bomb_mp4, 160, 160)] * 3

    def attack() -> list[httpx.Response]:
        with ThreadPoolExecutor(len(bombs)) as pool:
            return list(pool.map(lambda data: _post(server, data), bombs))

    growth, replies = _rss_growth(server, attack)
    for reply in replies:
        _refused_as_too_large(reply)
    assert growth < RSS_BOUND_MIB, f"the server grew by {growth:.0f} MiB for six refused uploads"


def test_a_stream_that_grows_midway_fails_before_its_big_frame_is_allocated(
    server: ServerProcess, bomb_ts: bytes
) -> None:
    """Frames of 160x160, then one of 16000x16000: its size is known only when it comes. The upload
    is taken (its first frame is small); its job fails."""
    small = [picture(i, 160, 160) for i in range(10)]
    growing = encode_video(small, container_format="mpegts", codec="libx264") + bomb_ts
    growth, reply = _rss_growth(server, lambda: _job(server, growing, "v.ts"))
    assert reply.status_code == 422 and reply.json()["error"] == "job_failed", reply.text
    assert f"{BOMB_SIDE}x{BOMB_SIDE} exceed" in reply.json()["detail"]
    assert growth < RSS_BOUND_MIB, f"the server grew by {growth:.0f} MiB"


# -- rotation ---------------------------------------------------------------------------------


def test_a_phone_video_is_read_upright_like_the_same_video_stored_upright(
    server: ServerProcess, synth_video: SynthVideo
) -> None:
    """The synthetic clip (192x144) stored upright, and stored turned a quarter counter-clockwise
    (144x192) with the display matrix of a phone held upright. Both are lossless, so once the
    second is turned back both jobs see the same pixels: same size, same poses, same overlay."""
    with av.open(str(synth_video.path)) as container:
        upright = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    turned_back = [np.rot90(image).copy() for image in upright]
    stored_upright, stored_turned = (
        encode_video(images, codec="libx264", pix_fmt="yuv444p", options={"qp": "0"}, rotation=rotation)
        for images, rotation in ((upright, None), (turned_back, -90))
    )
    assert display_matrix(stored_turned) == (0, 1, -1, 0)  # what a phone writes: show it turned clockwise

    boxes = json.dumps(synth_video.boxes())  # in the displayed frame: some reach past x = 144
    results, overlays = [], []
    for content in (stored_upright, stored_turned):
        reply = _job(server, content, boxes=boxes, render="true")
        assert reply.status_code == 200, reply.text
        results.append(reply.json())
        overlays.append(_overlay_frames(server, reply.json()["job_id"]))
    plain, turned = results
    assert (turned["video"]["width"], turned["video"]["height"]) == (synth_video.width, synth_video.height)
    assert (plain["video"]["rotation"], turned["video"]["rotation"]) == (0, 90)
    assert [len(f["persons"]) for f in turned["frames"]] == [len(f["persons"]) for f in plain["frames"]]
    for a, b in zip(_keypoints(plain), _keypoints(turned), strict=True):
        np.testing.assert_allclose(a, b, atol=0.5)
    assert len(overlays[1]) == len(overlays[0]) == synth_video.frames
    for a, b in zip(*overlays, strict=True):
        assert a.shape == b.shape == (synth_video.height, synth_video.width, 3)
        # the same picture; the skeletons' colours follow track ids, which may differ
        assert np.median(np.abs(a.astype(int) - b)) < 2


# -- timelines --------------------------------------------------------------------------------


def test_the_overlay_of_a_video_with_negative_timestamps_keeps_every_frame(server: ServerProcess) -> None:
    """An MPEG-TS whose 90 kHz clock starts 0.3 s before it wraps: FFmpeg reads its first three
    frames at negative times, which an MP4 overlay hid behind an edit list (9 frames of 12)."""
    start = 2**33 - 27000
    video = encode_video(
        [picture(i) for i in range(12)],
        container_format="mpegts",
        codec="libx264",
        pts=[start + 9000 * i for i in range(12)],
        time_base=Fraction(1, 90000),
        options={"bframes": "0"},
    )
    with av.open(io.BytesIO(video)) as container:
        assert [frame.pts for frame in container.decode(video=0)][:4] == [-27000, -18000, -9000, 0]
    reply = _job(server, video, "v.ts", render="true")
    assert reply.status_code == 200, reply.text
    assert len(reply.json()["frames"]) == 12
    overlay = _overlay_frames(server, reply.json()["job_id"])
    assert len(overlay) == 12
    brightness = [float(image[24:, 32:].mean()) for image in overlay]
    assert brightness == pytest.approx([20 + 15 * i for i in range(12)], abs=4)  # in order, none lost


def test_an_mp4_whose_edit_list_hides_its_first_frames_is_read_as_players_show_it(
    server: ServerProcess,
) -> None:
    """Key frames at -0.3 .. 0.8 s: the MP4 muxer hides the first three behind an edit list, and
    the demuxer skips them (no later frame needs them). The header still counts 12 frames: the job
    failed as a truncated file."""
    video = encode_video([picture(i) for i in range(12)], pts=list(range(-3, 9)), options={"g": "1"})
    reply = _job(server, video, render="true")
    assert reply.status_code == 200, reply.text
    assert len(reply.json()["frames"]) == len(_overlay_frames(server, reply.json()["job_id"])) == 9


# -- stills -----------------------------------------------------------------------------------


def test_mpo_is_read_as_its_first_picture(server: ServerProcess) -> None:
    still = mpo(picture(1, 96, 64), picture(9, 96, 64))
    assert Image.open(io.BytesIO(still)).format == "MPO"
    answers = _live(server, [still, still])
    assert [a["type"] for a in answers] == ["result", "result"], answers
    assert all(len(a["persons"]) == 1 for a in answers)
    reply = _post(server, still, "photo.jpg")  # a job is for videos: the still-image hint, as for a JPEG
    assert reply.status_code == 415 and "still image" in reply.json()["detail"]


def test_a_jpeg_that_does_not_fully_decode_is_corrupt_and_the_stream_goes_on(server: ServerProcess) -> None:
    rng = np.random.default_rng(3)
    picture = cv2.resize(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), (320, 240))
    frames = [jpeg_without_scan_data(picture), jpeg(picture), jpeg_cut_short(picture), jpeg(picture)]
    answers = _live(server, frames)
    assert [a["type"] for a in answers] == ["error", "result", "error", "result"], answers
    assert [a["error"] for a in answers if a["type"] == "error"] == ["corrupt", "corrupt"]


# -- corrupt frames ---------------------------------------------------------------------------


def test_corrupt_leading_frames_are_skipped_and_counted(server: ServerProcess) -> None:
    reply = _job(server, with_junk_frames(12, set(range(MAX_CORRUPT_FRAMES))))
    assert reply.status_code == 200, reply.text
    result = reply.json()
    assert result["video"]["corrupt_frames"] == MAX_CORRUPT_FRAMES
    assert len(result["frames"]) == 12 - MAX_CORRUPT_FRAMES


def test_one_corrupt_frame_more_than_the_limit_fails_as_corrupt(server: ServerProcess) -> None:
    leading = _post(server, with_junk_frames(12, set(range(MAX_CORRUPT_FRAMES + 1))))
    assert leading.status_code == 422 and leading.json()["error"] == "corrupt", leading.text
    assert "did not decode" in leading.json()["detail"]
    # the first frame decodes (the upload is taken), then too many do not. The job used to hang
    # for good here: ending its session awaited the person detection it had just cancelled
    midway = _job(server, with_junk_frames(12, set(range(1, MAX_CORRUPT_FRAMES + 2))), timeout=60)
    assert midway.status_code == 422 and midway.json()["error"] == "job_failed", midway.text
    assert "did not decode" in midway.json()["detail"]


# -- several video streams --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("container_format", "sizes", "default", "chosen"),
    [
        ("mp4", [(160, 120), (64, 48)], 1, 1),  # the stream marked default, though smaller
        ("matroska", [(64, 48), (160, 120)], None, 1),  # none marked: the largest
    ],
    ids=["default", "largest"],
)
def test_the_video_stream_is_chosen_by_the_stated_rule_and_reported(
    server: ServerProcess,
    container_format: str,
    sizes: list[tuple[int, int]],
    default: int | None,
    chosen: int,
) -> None:
    reply = _job(server, video_streams(container_format, sizes, default), f"v.{container_format[:3]}")
    assert reply.status_code == 200, reply.text
    video = reply.json()["video"]
    assert video["stream"] == chosen
    assert (video["width"], video["height"]) == sizes[chosen]
