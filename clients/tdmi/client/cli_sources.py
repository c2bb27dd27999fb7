"""``tdmi-client sources add|list|watch|results|rm``: the cameras the server pulls, from a terminal.

``add`` prints the new source's id alone on stdout (``ID=$(tdmi-client sources add URL)``);
``watch`` prints one line per frame, or every viewer message as a JSON line with ``--json``;
``results`` writes a recorded time range as a job's result (times go to the server as typed: it
reads epoch seconds and ISO 8601, and refuses anything else with a 422).
Errors and exit codes are those of ``tdmi.client.cli``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from tdmi.client.camera_sources import ViewerEvent
from tdmi.client.terminal import client_for, out, positive, say, write_json
from tdmi.protocol.sources import SourceInfo, SourceStatusMessage
from tdmi.protocol.stream import ResultMessage

__all__ = ["add_sources_commands", "frame_line"]


def frame_line(result: ResultMessage, received_at: float) -> str:
    """Frame id, persons, the server's latency, and the camera's capture to ``received_at`` (wall
    clock) when the camera gave a timestamp: both clocks are this host's only on a local server."""
    line = f"frame {result.frame_id}\t{len(result.persons)} persons\tserver {result.latency_ms:.0f} ms"
    if result.timestamp is not None:
        line += f"\tcamera to here {1000 * (received_at - result.timestamp):.0f} ms"
    return line


def _status_line(message: SourceStatusMessage) -> str:
    why = f" ({message.detail})" if message.detail else ""
    return f"source {message.source_id}: {message.status}{why}"


def _info_line(info: SourceInfo) -> str:
    fps = f"{info.processing_fps:.1f} fps" if info.processing_fps is not None else "- fps"
    error = f"\t{info.last_error}" if info.last_error else ""
    return f"{info.source_id}\t{info.status}\t{info.frames_processed} frames\t{fps}\t{info.url}{error}"


def _add(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        options = {"model": args.model, "lookahead": args.lookahead, "max_fps": args.max_fps}
        options["record"] = args.record or None  # not given: the server's default
        created = client.sources.add(args.camera, **options)
    out(created.source_id)
    say(f"source {created.source_id} {created.status}; overlay {created.links.overlay}")
    return 0


def _list(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        listed = client.sources.list()
    if args.json:
        write_json([info.model_dump(mode="json") for info in listed], None)
    elif listed:
        out("\n".join(_info_line(info) for info in listed))
    return 0


def _show(message: ViewerEvent, as_json: bool) -> None:
    if as_json:
        out(message.model_dump_json())
    elif isinstance(message, ResultMessage):
        out(frame_line(message, time.time()))
    elif isinstance(message, SourceStatusMessage):
        say(_status_line(message))
    else:
        say(f"{message.count} results not delivered here ({message.reason})")


def _watch(args: argparse.Namespace) -> int:
    results = 0
    with client_for(args) as client:
        messages = client.sources.watch(args.source)
        try:
            for message in messages:
                _show(message, args.json)
                if isinstance(message, ResultMessage):
                    results += 1
                if args.frames is not None and results >= args.frames:
                    break
        except KeyboardInterrupt:
            say("interrupted: watching stopped (the source goes on)")
        finally:
            messages.close()
    return 0


def _results(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        result = client.sources.recorded(args.source, args.start, args.end, format=args.format)
    write_json(result.model_dump(mode="json") if args.format == "json" else result, args.output)
    return 0


def _remove(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        last = client.sources.remove(args.source)
    say(f"source {last.source_id} removed after {last.frames_processed} frames")
    return 0


def add_sources_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``sources`` and its subcommands, under ``commands`` (the subparsers of ``tdmi-client``)."""
    sources = commands.add_parser("sources", help="cameras the server pulls (RTSP, HTTP MJPEG/HLS)")
    actions = sources.add_subparsers(dest="action", required=True)

    add = actions.add_parser("add", help="have the server pull a camera; prints the source id")
    add.add_argument(
        "camera", metavar="URL", help="rtsp://, rtsps://, http:// or https:// (credentials are never shown)"
    )
    add.add_argument("--model", help="model name (default: the server's first)")
    add.add_argument("--lookahead", type=int, help="future frames to wait for, 0..d")
    add.add_argument("--max-fps", type=positive(float), help="process at most N frames per second")
    add.add_argument(
        "--record",
        action="store_true",
        help="keep the results on the server (read back with `sources results`) until the jobs' retention",
    )
    add.set_defaults(run=_add)

    listed = actions.add_parser("list", help="the sources of this key, with their status")
    listed.add_argument("--json", action="store_true", help="the full descriptions as JSON")
    listed.set_defaults(run=_list)

    watch = actions.add_parser("watch", help="one line per frame of a source until it stops")
    watch.add_argument("source", help="source id")
    watch.add_argument("--frames", type=positive(int), help="stop after N results")
    watch.add_argument("--json", action="store_true", help="every message (result, status, dropped) as JSON")
    watch.set_defaults(run=_watch)

    results = actions.add_parser("results", help="a recorded source's results in a time range, as JSON")
    results.add_argument("source", help="source id")
    moment = "epoch seconds or ISO 8601 (UTC unless it says)"
    results.add_argument("--from", dest="start", metavar="T", required=True, help=moment)
    results.add_argument("--to", dest="end", metavar="T", help=f"{moment}; default: now")
    results.add_argument("--format", choices=["json", "posetrack", "coco"], default="json")
    results.add_argument("--output", type=Path, metavar="FILE", help="write here (default: stdout)")
    results.set_defaults(run=_results)

    remove = actions.add_parser("rm", help="stop a source and free what it held")
    remove.add_argument("source", help="source id")
    remove.set_defaults(run=_remove)
