"""A real RTSP camera for tests: GStreamer's RTSP server serving a clip, looped, at a set rate.

Run by the system Python (``/usr/bin/python3``, where Debian's ``python3-gi`` and
``gir1.2-gst-rtsp-server-1.0`` put ``gi``), not the project's virtual environment::

    /usr/bin/python3 tests/helpers/rtsp_server.py --port 8554 --clip tests/data/pedestrians/vtest_cut.mp4

The clip is decoded once; its frames are then pushed forever into ``x264enc tune=zerolatency``
and ``rtph264pay``, timestamped at ``--fps``, so the stream is what an IP camera sends: H.264 over
RTP, a key frame every second, no end. One pipeline is shared by every client; it starts when
the first one plays. ``--user`` and ``--password`` require HTTP Basic authentication. The script
prints ``ready`` once it listens and runs until killed (tests/helpers/cameras.py drives it).
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402  (after require_version)


def decode_clip(path: str) -> tuple[list[bytes], int, int]:
    """Every frame of the clip as raw I420 bytes, with the width and height."""
    pipeline = Gst.parse_launch(
        "filesrc name=file ! decodebin ! videoconvert ! video/x-raw,format=I420 ! "
        "appsink name=sink sync=false"
    )
    pipeline.get_by_name("file").set_property("location", path)
    sink = pipeline.get_by_name("sink")
    pipeline.set_state(Gst.State.PLAYING)
    frames, width, height = [], 0, 0
    while (sample := sink.emit("pull-sample")) is not None:
        structure = sample.get_caps().get_structure(0)
        width, height = structure.get_value("width"), structure.get_value("height")
        buffer = sample.get_buffer()
        frames.append(buffer.extract_dup(0, buffer.get_size()))
    pipeline.set_state(Gst.State.NULL)
    if not frames:
        raise SystemExit(f"no video frames in {path}")
    return frames, width, height


class LoopingClip(GstRtspServer.RTSPMediaFactory):
    """Feeds the decoded frames into each new media's ``appsrc``, round and round."""

    def __init__(self, frames: list[bytes], width: int, height: int, fps: int):
        super().__init__()
        self.frames, self.fps = frames, fps
        self.duration = Gst.SECOND // fps
        caps = f"video/x-raw,format=I420,width={width},height={height},framerate={fps}/1"
        self.set_launch(
            f"( appsrc name=src is-live=true format=time caps={caps} ! videoconvert ! "
            f"x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} ! "
            "rtph264pay name=pay0 pt=96 config-interval=1 )"
        )
        self.set_shared(True)
        self.connect("media-configure", self._configure)

    def _configure(self, _factory: GstRtspServer.RTSPMediaFactory, media: GstRtspServer.RTSPMedia) -> None:
        source = media.get_element().get_by_name_recurse_up("src")
        source.connect("need-data", self._push, {"count": 0})

    def _push(self, source: Gst.Element, _length: int, state: dict[str, int]) -> None:
        count = state["count"]
        buffer = Gst.Buffer.new_wrapped(self.frames[count % len(self.frames)])
        buffer.pts = buffer.dts = count * self.duration
        buffer.duration = self.duration
        state["count"] = count + 1
        source.emit("push-buffer", buffer)


def _require_basic_auth(
    server: GstRtspServer.RTSPServer, factory: LoopingClip, user: str, password: str
) -> None:
    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "viewer")
    auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
    server.set_auth(auth)
    permissions = GstRtspServer.RTSPPermissions()
    permissions.add_permission_for_role("viewer", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS, True)
    permissions.add_permission_for_role("viewer", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, True)
    factory.set_permissions(permissions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--clip", required=True)
    parser.add_argument("--fps", type=int, default=10)
    parser.add_argument("--path", default="/cam")
    parser.add_argument("--user")
    parser.add_argument("--password")
    args = parser.parse_args()

    Gst.init(None)
    factory = LoopingClip(*decode_clip(args.clip), fps=args.fps)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    if args.user:
        _require_basic_auth(server, factory, args.user, args.password or "")
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        raise SystemExit(f"cannot listen on 127.0.0.1:{args.port}")
    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    print("ready", flush=True)
    loop.run()
    sys.exit(0)


if __name__ == "__main__":
    main()
