"""``tdmi-client``: the pose service from a terminal (video jobs, live feeds, camera sources, models,
job status).

Exit codes: 0 done; 1 other server or stream error; 2 bad usage or bad input (a missing or
unwritable file, a video the server refuses, an unknown job, a live source, a camera source the
server refuses or does not know, --render or --show without the SDK's ``media`` extra); 3 server
unreachable; 4 missing or wrong API key; 5 the job failed or was cancelled; 130 interrupted
while waiting for a job; 141 stdout closed by its
reader (``| head``), quietly, as a shell reports a tool that SIGPIPE ended. Errors are one line
on stderr; results go to ``--out`` or stdout.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from tdmi.client.cli_sources import add_sources_commands
from tdmi.client.client import DEFAULT_URL, PoseClient
from tdmi.client.errors import (
    AuthError,
    BadRequest,
    JobFailed,
    PoseError,
    ServerUnreachable,
    SourceError,
)
from tdmi.client.events import (
    FrameDropped,
    FrameResult,
    Reconnecting,
    StreamEnded,
    StreamResumed,
    StreamStarted,
)
from tdmi.client.render import PreviewWindow, VideoFileWriter, display_available
from tdmi.client.streaming import StreamOptions
from tdmi.client.terminal import StdoutClosed, client_for, out, positive, say, write_json
from tdmi.protocol.media import MediaUnavailable
from tdmi.protocol.overlay import DEFAULT_SCORE_THRESHOLD, draw_poses

__all__ = ["EXIT_CODES", "main"]

EXIT_CODES = {
    "ok": 0,
    "error": 1,
    "bad_input": 2,
    "unreachable": 3,
    "auth": 4,
    "job_failed": 5,
    "interrupted": 130,
    "stdout_closed": 141,  # 128 + SIGPIPE
}


def _pose(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        job = client.submit(args.video, model=args.model, lookahead=args.lookahead, render=bool(args.render))
        say(f"job {job.id} submitted")
        job.wait(progress=not args.quiet)
        result = job.result(args.format)
        data = result.model_dump(mode="json") if args.format == "json" else result
        write_json(data, args.out)
        if args.render:
            job.download_video(args.render)
        where = f" -> {args.out}" if args.out else ""
        say(f"job {job.id} done{where}" + (f", overlay video {args.render}" if args.render else ""))
    return 0


class _StreamOutputs:
    """Everything ``stream`` does with each answer: JSON lines, overlay video, window, summary."""

    def __init__(self, args: argparse.Namespace, client: PoseClient):
        self.client = client
        self.lines: TextIO | None = args.out.open("w") if args.out else None
        self.video = VideoFileWriter(args.render, args.render_fps) if args.render else None
        self.score_threshold: float = args.score_threshold
        self.window: PreviewWindow | None = None
        if args.show and not display_available():
            say("no display (DISPLAY is not set): --show ignored")
        elif args.show:
            self.window = PreviewWindow()
        self.edges: list[tuple[int, int]] = []
        self.results = self.dropped = 0
        self.latencies: list[float] = []
        self.stopped = False

    def on_start(self, event: StreamStarted) -> None:
        models = {m.name: m for m in self.client.models().models}
        model = models.get(event.ready.model)
        self.edges = list(model.skeleton.edges) if model else []
        say(f"stream {event.ready.stream_id}: model {event.ready.model}, lookahead {event.ready.lookahead}")

    def on_frame(self, event: FrameResult | FrameDropped) -> None:
        if self.lines is not None:
            self.lines.write(event.message.model_dump_json() + "\n")
        if isinstance(event, FrameDropped):
            self.dropped += 1
            persons: list[Any] = []
        else:
            self.results += 1
            self.latencies.append(event.latency_ms)
            persons = event.persons
        if event.image is None or (self.video is None and self.window is None):
            return
        drawn = draw_poses(event.image, persons, self.edges, self.score_threshold)
        if self.video is not None:
            self.video.write(drawn)
        if self.window is not None:
            self._show(drawn)

    def _show(self, image: Any) -> None:
        assert self.window is not None
        try:
            self.stopped = not self.window.show(image)
        except self.window.error:
            say("this OpenCV build has no window support (opencv-python-headless): --show ignored")
            self.window = None

    def close(self) -> None:
        if self.lines is not None:
            self.lines.close()
        if self.video is not None:
            self.video.close()
        if self.window is not None:
            self.window.close()
        if not self.results and not self.dropped:
            return
        mean = sum(self.latencies) / len(self.latencies) if self.latencies else 0.0
        say(f"{self.results} results, {self.dropped} dropped, mean server latency {mean:.0f} ms")


def _stream(args: argparse.Namespace) -> int:
    source: int | str = int(args.source) if args.source.isdigit() else args.source
    with client_for(args) as client:
        outputs = _StreamOutputs(args, client)
        events = client.stream(
            source,
            model=args.model,
            lookahead=args.lookahead,
            fps=args.fps,
            max_frames=args.max_frames,
            keep_images=bool(args.render or args.show),
            options=StreamOptions(quality=args.quality),
        )
        try:
            for event in events:
                if isinstance(event, StreamStarted):
                    outputs.on_start(event)
                elif isinstance(event, FrameResult | FrameDropped):
                    outputs.on_frame(event)
                elif isinstance(event, Reconnecting):
                    say(f"connection lost ({event.reason}); reconnecting in {event.delay_s:.1f} s, "
                         f"{len(event.lost)} frames in flight lost")  # fmt: skip
                elif isinstance(event, StreamResumed):
                    say(f"stream resumed on another worker: {event.message.reason}")
                elif isinstance(event, StreamEnded):
                    break
                if outputs.stopped:
                    break
        except KeyboardInterrupt:
            say("interrupted: stream stopped")
        finally:
            events.close()
            outputs.close()
    return 0


def _models(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        listed = client.models().models
    if args.json:
        write_json([m.model_dump(mode="json") for m in listed], None)
        return 0
    rows = [
        f"{m.name}\t{m.num_frames} frames\t{'x'.join(str(v) for v in m.input_size)}\t"
        f"{m.checkpoint or 'untrained'}{' (synthetic demo)' if m.synthetic_demo else ''}\t{m.description}"
        for m in listed
    ]
    if rows:
        out("\n".join(rows))
    return 0


def _status(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        job = client.job(args.job).status()
    write_json(job.model_dump(mode="json"), None)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tdmi-client",
        description="Client of the TDMI pose service.",
        epilog="exit codes: 0 ok, 1 server error, 2 bad input, 3 unreachable, 4 bad key, 5 job failed",
    )
    parser.add_argument("--url", default=os.environ.get("TDMI_URL", DEFAULT_URL), help="server (TDMI_URL)")
    parser.add_argument("--api-key", default=os.environ.get("TDMI_API_KEY"), help="API key (TDMI_API_KEY)")
    parser.add_argument("--timeout", type=positive(float), default=60.0, help="HTTP timeout, seconds")
    commands = parser.add_subparsers(dest="command", required=True)

    pose = commands.add_parser("pose", help="poses of a video file (a job), with a progress bar")
    pose.add_argument("video", type=Path)
    pose.add_argument("--out", type=Path, help="write the result here (default: stdout)")
    pose.add_argument(
        "--render",
        type=Path,
        metavar="OUT.mp4",
        help="also save the server's overlay video (joints below TDMI_OVERLAY_SCORE_THRESHOLD left out)",
    )
    pose.add_argument("--format", choices=["json", "posetrack", "coco"], default="json")
    pose.add_argument("--model", help="model name (default: the server's first)")
    pose.add_argument("--lookahead", type=int, help="future frames per clip, 0..d")
    pose.add_argument("--quiet", action="store_true", help="no progress bar")
    pose.set_defaults(run=_pose)

    stream = commands.add_parser("stream", help="live poses of a camera, URL or video file")
    stream.add_argument("source", help="webcam index (0), video file, or rtsp:// / http:// URL")
    stream.add_argument("--show", action="store_true", help="draw skeletons live in a window")
    stream.add_argument("--out", type=Path, help="one JSON line per frame (result or dropped)")
    stream.add_argument("--render", type=Path, metavar="OUT.mp4", help="write the drawn frames to a video")
    stream.add_argument("--render-fps", type=positive(float), default=25.0, help="frame rate of --render")
    stream.add_argument(
        "--score-threshold",
        type=float,
        default=DEFAULT_SCORE_THRESHOLD,
        metavar="0..1",
        help=f"--render/--show leave out joints scoring below this (default {DEFAULT_SCORE_THRESHOLD})",
    )
    stream.add_argument("--fps", type=positive(float), help="send at most N frames per second")
    stream.add_argument("--max-frames", type=positive(int), help="stop after N frames")
    stream.add_argument("--quality", type=int, default=85, choices=range(1, 101), metavar="1..100")
    stream.add_argument("--model", help="model name (default: the server's first)")
    stream.add_argument("--lookahead", type=int, help="future frames to wait for, 0..d")
    stream.set_defaults(run=_stream)

    models = commands.add_parser("models", help="models the server has loaded")
    models.add_argument("--json", action="store_true", help="the full descriptions as JSON")
    models.set_defaults(run=_models)

    status = commands.add_parser("status", help="where a job stands (JSON)")
    status.add_argument("job", help="job id")
    status.set_defaults(run=_status)

    add_sources_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except (SourceError, BadRequest, MediaUnavailable) as exc:
        code, message = "bad_input", str(exc)
    except ServerUnreachable as exc:
        code, message = "unreachable", str(exc)
    except AuthError as exc:
        code, message = "auth", f"{exc.detail} (give --api-key or TDMI_API_KEY)"
    except JobFailed as exc:
        code, message = "job_failed", str(exc)
    except OSError as exc:  # a local file: network failures arrive as ServerUnreachable
        code, message = "bad_input", str(exc)
    except (PoseError, TimeoutError) as exc:
        code, message = "error", str(exc) or type(exc).__name__
    except KeyboardInterrupt:
        code, message = "interrupted", "interrupted"
    except StdoutClosed:  # the Python docs' "Note on SIGPIPE": no flush into the closed pipe at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_CODES["stdout_closed"]
    say(message)
    return EXIT_CODES[code]


if __name__ == "__main__":
    sys.exit(main())
